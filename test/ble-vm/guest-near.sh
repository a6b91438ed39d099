#!/bin/bash
# Guest script (run by run-vm.sh): two device agents that pay each other over BLE, from the
# bundle in $BLE_VM_OUT, their stores in the guest's /var/tmp. The payee is killed half-way
# through the payer's payments and started again, with its own payments to make.
set -u
. "$(dirname "$0")/guest-stack.sh"
O=$BLE_VM_OUT
start_bluetoothd || { ts "bluetoothd did not come up"; exit 2; }
ts "bluetoothd up; network: $(ip -4 addr show eth0 | grep -o 'inet [0-9./]*')"
payee(){ node "$O/near-check.mjs" payee /var/tmp/payee "$1" >> "$O/payee.log" 2>&1 & PAYEE=$!; }
payee 0
for i in $(seq 600); do [ -e "$O/payee.ledger" ] && break; sleep 0.1; done
node "$O/near-check.mjs" payer /var/tmp/payer "${COUNT:-100}" > "$O/payer.log" 2>&1 & PAYER=$!
for i in $(seq 6000); do [ -e "$O/payer.half" ] && break; kill -0 $PAYER 2>/dev/null || break; sleep 0.1; done
ts "the payer is half-way: restarting the payee"
kill -9 $PAYEE; wait $PAYEE 2>/dev/null
payee "${COUNT:-100}"
wait $PAYER; payer=$?
wait $PAYEE; payee=$?
ts "payer exited $payer, payee $payee"
tail -3 "$O/payer.log" "$O/payee.log"
[ $payer = 0 ] && [ $payee = 0 ]
