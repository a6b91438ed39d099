#!/bin/bash
# Guest script (run by run-vm.sh): a payee with the broker and a payer with no internet
# (no broker URL), which reaches the gateway through the payee's relay, from the bundle.
set -u
. "$(dirname "$0")/guest-stack.sh"
O=$BLE_VM_OUT
start_bluetoothd || { ts "bluetoothd did not come up"; exit 2; }
node "$O/near-check.mjs" payee /var/tmp/payee 0 > "$O/payee.log" 2>&1 & PAYEE=$!
for i in $(seq 600); do [ -e "$O/payee.ledger" ] && break; sleep 0.1; done
node "$O/near-check.mjs" payer /var/tmp/payer "${COUNT:-100}" > "$O/payer.log" 2>&1 & PAYER=$!
wait $PAYER; payer=$?
wait $PAYEE; payee=$?
ts "payer exited $payer, payee $payee"
tail -3 "$O/payer.log" "$O/payee.log"
[ $payer = 0 ] && [ $payee = 0 ]
