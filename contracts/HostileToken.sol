// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

/// @notice An ERC20 that misbehaves on demand, for the adjudicator's fuzz and attack tests:
/// it returns false, charges a fee on transfer, re-enters the caller, refuses a receiver or
/// burns all gas. Anyone may mint and switch its behaviour; never deploy it for value.
contract HostileToken {
    enum Mode {
        Honest,
        ReturnFalse,
        FeeOnTransfer,
        Reenter,
        BurnGas,
        NoReturnValue
    }

    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;
    mapping(address => bool) public blocked;
    Mode public mode;
    /// What a re-entering transfer calls first (target and calldata), once per transfer.
    address public reentryTarget;
    bytes public reentryData;
    bool private reentering;

    event Transfer(address indexed from, address indexed to, uint256 value);

    function mint(address to, uint256 amount) external {
        balanceOf[to] += amount;
        emit Transfer(address(0), to, amount);
    }

    function setMode(Mode m) external {
        mode = m;
    }

    function setBlocked(address account, bool isBlocked) external {
        blocked[account] = isBlocked;
    }

    function setReentry(address target, bytes calldata data) external {
        reentryTarget = target;
        reentryData = data;
    }

    function approve(address spender, uint256 amount) external returns (bool) {
        allowance[msg.sender][spender] = amount;
        return true;
    }

    function transfer(address to, uint256 amount) external returns (bool) {
        return _transfer(msg.sender, to, amount);
    }

    function transferFrom(address from, address to, uint256 amount) external returns (bool) {
        uint256 allowed = allowance[from][msg.sender];
        if (allowed != type(uint256).max) allowance[from][msg.sender] = allowed - amount;
        return _transfer(from, to, amount);
    }

    function _transfer(address from, address to, uint256 amount) private returns (bool) {
        Mode m = mode;
        if (m == Mode.ReturnFalse) return false;
        if (m == Mode.BurnGas) {
            while (true) {}
        }
        require(!blocked[to], "blocked");
        if (m == Mode.Reenter && !reentering && reentryTarget != address(0)) {
            reentering = true;
            // The call's own outcome does not matter: what matters is that the adjudicator
            // stays consistent whatever it does.
            (bool ok,) = reentryTarget.call(reentryData);
            ok;
            reentering = false;
        }
        uint256 received = m == Mode.FeeOnTransfer ? amount - amount / 100 : amount;
        balanceOf[from] -= amount;
        balanceOf[to] += received;
        emit Transfer(from, to, received);
        if (m == Mode.NoReturnValue) {
            assembly ("memory-safe") {
                return(0, 0)
            }
        }
        return true;
    }
}
