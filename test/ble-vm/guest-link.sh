#!/bin/bash
# Guest script (run by run-vm.sh): BlueZ with two btvirt controllers; a payee on hci0 and a
# payer on hci1, both from the bundle in $BLE_VM_OUT; the payee is killed and restarted once
# the payer's first phase is done. Exit code 0 when the payer wrote its result.
set -u
. "$(dirname "$0")/guest-stack.sh"
O=$BLE_VM_OUT
start_bluetoothd || { ts "bluetoothd did not come up"; exit 2; }
ts "bluetoothd up"
payee(){ node "$O/link-check.mjs" payee "$(cat "$O/payee.key")" kiosk >> "$O/payee.log" 2>&1 & PAYEE=$!; }
payee
for i in $(seq 300); do grep -q READY "$O/payee.log" && break; sleep 0.1; done
ts "payee ready"
node "$O/link-check.mjs" payer "$(cat "$O/payer.key")" "$(cat "$O/payee.address")" "${COUNT:-100}" "$O" > "$O/payer.log" 2>&1 & PAYER=$!
for i in $(seq 3000); do [ -e "$O/phase1" ] && break; kill -0 $PAYER 2>/dev/null || break; sleep 0.1; done
ts "phase 1 done; restarting the payee"
kill -9 $PAYEE; wait $PAYEE 2>/dev/null
payee
wait $PAYER; rc=$?
ts "payer exited $rc"
tail -5 "$O/payer.log"
[ $rc = 0 ] || exit $rc
# The payer's side restarts: one is SIGKILLed half-way (BlueZ keeps its connection), the next links and pays.
again(){ node "$O/link-check.mjs" payer "$(cat "$O/payer.key")" "$(cat "$O/payee.address")" 40 "$O" again >> "$O/payer-again.log" 2>&1; }
again & AGAIN=$!
for i in $(seq 1200); do [ -e "$O/again-half" ] && break; kill -0 $AGAIN 2>/dev/null || break; sleep 0.1; done
pkill -9 -f "link-check.mjs payer"; wait $AGAIN 2>/dev/null
rm -f "$O/again-half"
again; rc=$?
ts "restarted payer exited $rc"
tail -3 "$O/payer-again.log"
exit $rc
