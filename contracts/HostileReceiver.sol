// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

/// @notice Code to place at a channel participant's address (anvil_setCode), so that ETH
/// payouts to it revert, burn all gas, or re-enter the adjudicator.
contract HostileReceiver {
    enum Mode {
        Revert,
        BurnGas,
        Reenter
    }

    Mode public immutable mode;
    address public reentryTarget;
    bytes public reentryData;

    constructor(Mode m) {
        mode = m;
    }

    function setReentry(address target, bytes calldata data) external {
        reentryTarget = target;
        reentryData = data;
    }

    receive() external payable {
        if (mode == Mode.Revert) revert("no thanks");
        if (mode == Mode.BurnGas) {
            while (true) {}
        }
        (bool ok,) = reentryTarget.call(reentryData);
        ok;
    }
}
