#!/bin/bash
# Guest script (run by run-vm.sh): the near-field CLI from the lean bundle. A payee that
# relays; `picopay nearby`; a payer with no internet that pays it 100 times and settles
# through the payee's relay. Each device's ledger line is copied to OUT/<role>.ledger for
# the host, which funds it.
set -u
. "$(dirname "$0")/guest-stack.sh"
O=$BLE_VM_OUT
D="$O/picopay-device.mjs"
export PICOPAY_LOG=warn PICOPAY_PASSWORD=
start_bluetoothd || { ts "bluetoothd did not come up"; exit 2; }
ledger(){ # ROLE: wait for its ledger line, hand it to the host
  for i in $(seq 1200); do grep -q '"event":"ledger"' "$O/$1.out" 2>/dev/null && break; sleep 0.1; done
  node -e 'const [o, r] = process.argv.slice(1); const fs = require("fs"); const j = JSON.parse(fs.readFileSync(`${o}/${r}.out`, "utf8").split("\n").find((l) => l.includes("\"event\":\"ledger\""))); fs.writeFileSync(`${o}/${r}.ledger.tmp`, JSON.stringify({ address: j.address, ledger: j.channel })); fs.renameSync(`${o}/${r}.ledger.tmp`, `${o}/${r}.ledger`)' "$O" "$1"
}
node "$D" --role payee --ble hci0 --name kiosk --price "$(cat "$O/price")" --relay --data-dir /var/tmp/payee $(cat "$O/device.args") > "$O/payee.out" 2> "$O/payee.err" & PAYEE=$!
ledger payee
for i in $(seq 2400); do grep -q '"event":"ready"' "$O/payee.out" && break; sleep 0.1; done
ts "payee ready"
node "$D" nearby --adapter hci1 --seconds 6 --json > "$O/nearby.out" 2> "$O/nearby.err"
ts "nearby: $(cat "$O/nearby.out")"
PAYEE_ADDRESS=$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).address)' "$O/payee.ledger")
node "$D" --role payer --ble hci1 --near "$PAYEE_ADDRESS" --no-internet --amount "$(cat "$O/price")" --count "${COUNT:-100}" --lock 0.01 --data-dir /var/tmp/payer $(cat "$O/device.args") > "$O/payer.out" 2> "$O/payer.err" & PAYER=$!
ledger payer
wait $PAYER; payer=$?
for i in $(seq 600); do grep -q '"event":"settled"' "$O/payee.out" && break; sleep 0.1; done
kill $PAYEE; wait $PAYEE 2>/dev/null
ts "payer exited $payer"
tail -3 "$O/payer.err" "$O/payee.err"
exit $payer
