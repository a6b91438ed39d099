// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

/// @title picopay adjudicator
/// @notice Holds the deposits of two-party ledger channels and settles them: cooperatively
/// with a final state, or by dispute (register, refute, conclude). Virtual channels live
/// inside ledger channels as locked sub-allocations committed by a Merkle root; each one
/// is registered on its own and released into each concluded parent with a Merkle proof,
/// so its siblings never appear on-chain.
/// @dev Storage is kept to what an open dispute or a concluded channel must remember, as
/// hashes; callers pass the committed values back as calldata.
/// - `records[id]`: hash of a registration (version, timeout, outcome).
/// - `holdings[id][asset]`: the deposits, below 2^255. Concluding sets bit 255 on every
///   funded asset, so no deposit is accepted and nothing is paid twice; the slot of the
///   outcome's first asset then commits to the Settled values (what is kept for locked
///   sub-allocations). Reusing that already-written slot instead of a fresh one saves
///   ~20k gas per close and makes a close cost the same with or without open siblings.
contract Adjudicator {
    // ---------------------------------------------------------------- types

    uint8 internal constant LEDGER = 0;
    uint8 internal constant VIRTUAL = 1;
    uint8 internal constant STREAM = 2;

    /// Channel parameters without chain id and adjudicator: those are always this chain and
    /// this contract, so an id (and every state signed for it) is bound to this deployment.
    struct Params {
        address[2] participants;
        uint64 challengeDuration;
        uint256 nonce;
        uint8 kind;
    }

    struct Outcome {
        address[] assets;
        uint256[2][] balances;
        bytes32 lockedRoot;
    }

    /// A channel state; its channel id is implied by the Params it is submitted with.
    struct State {
        uint64 version;
        Outcome outcome;
        bool isFinal;
    }

    struct Signature {
        bytes32 r;
        bytes32 s;
        uint8 v;
    }

    /// What a registration committed to, as emitted in `Registered`. `outcome` is the
    /// outcome hash, or for stream channels the cumulative amount paid.
    struct Dispute {
        uint64 version;
        uint64 timeout;
        bytes32 outcome;
    }

    /// What a concluded ledger channel keeps for its still-locked sub-allocations, as
    /// emitted in `Concluded` and `Released`: `lockedRoot` has released leaves zeroed.
    struct Settled {
        address[] assets;
        bytes32 lockedRoot;
        uint256[] held;
    }

    struct SubAlloc {
        bytes32 id;
        uint256[] balances;
        uint8[2] indexMap;
    }

    // ---------------------------------------------------------------- errors

    error ValueMismatch();
    error LengthMismatch();
    error TransferFailed();
    error HoldingsOverflow();
    error WrongKind(uint8 kind);
    error InvalidSignature(uint256 participant);
    error ChannelConcluded(bytes32 channelId);
    error AlreadyRegistered(bytes32 channelId);
    error DisputeMismatch(bytes32 channelId);
    error ChallengePeriodOver(bytes32 channelId);
    error ChallengePeriodRunning(bytes32 channelId, uint64 timeout);
    error VersionNotNewer(uint64 registered, uint64 submitted);
    error VoucherNotHigher(uint256 registered, uint256 submitted);
    error OutcomeMismatch();
    error ParentNotConcluded(bytes32 parentId);
    error SubAllocMismatch();
    error InvalidIndexMap();
    error InvalidProof();
    error NothingToWithdraw();

    // ---------------------------------------------------------------- events

    event Deposited(bytes32 indexed channelId, address indexed asset, uint256 holdings);
    event Registered(bytes32 indexed channelId, uint64 version, uint64 timeout, bytes32 outcome);
    event Concluded(bytes32 indexed channelId, bytes32 lockedRoot, uint256[] held);
    event Released(bytes32 indexed parentId, bytes32 indexed subId, bytes32 lockedRoot, uint256[] held);
    event Credited(address indexed account, address indexed asset, uint256 amount);

    // ---------------------------------------------------------------- storage

    /// holdings[channelId][asset], see the contract's @dev note.
    mapping(bytes32 => mapping(address => uint256)) public holdings;
    /// Registration hash per channel, see the contract's @dev note.
    mapping(bytes32 => bytes32) public records;
    /// Payouts whose push failed (reverting receiver, refusing token), for `withdraw`.
    mapping(address => mapping(address => uint256)) public credits;

    uint256 private constant CONCLUDED = 1 << 255;
    /// A released sub-allocation's leaf becomes zero (no keccak preimage), so it cannot be proven again.
    bytes32 private constant RELEASED_LEAF = bytes32(0);

    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 private constant STATE_TYPEHASH =
        keccak256("State(bytes32 channelId,uint64 version,bytes32 outcomeHash,bool isFinal)");
    bytes32 private constant VOUCHER_TYPEHASH = keccak256("Voucher(bytes32 channelId,uint256 cumulative)");
    uint256 private constant HALF_CURVE_ORDER = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;

    /// Gas for a payout push: enough for a smart wallet's receive, too little to grief.
    uint256 private constant ETH_PAYOUT_GAS = 30_000;
    uint256 private constant TOKEN_PAYOUT_GAS = 120_000;

    bytes32 private immutable cachedDomainSeparator;
    uint256 private immutable cachedChainId;

    constructor() {
        cachedChainId = block.chainid;
        cachedDomainSeparator = _buildDomainSeparator();
    }

    // ---------------------------------------------------------------- deposits

    function deposit(bytes32 channelId_, address asset, uint256 amount) external payable {
        _pull(asset, amount);
        _credit(channelId_, asset, amount);
    }

    /// Funds many channels in one transaction, with one token transfer.
    function depositMany(bytes32[] calldata channelIds, address asset, uint256[] calldata amounts) external payable {
        if (channelIds.length != amounts.length) revert LengthMismatch();
        uint256 total;
        for (uint256 i; i < amounts.length; ++i) total += amounts[i];
        _pull(asset, total);
        for (uint256 i; i < channelIds.length; ++i) _credit(channelIds[i], asset, amounts[i]);
    }

    // ---------------------------------------------------------------- states: register, refute, conclude

    /// Registers a state signed by both participants. A final state concludes at once; a
    /// ledger channel's final state is the cooperative close and pays out in this
    /// transaction, even while an older state is registered.
    function register(Params calldata p, State calldata s, Signature[2] calldata sigs) external {
        bytes32 id = channelId(p);
        bool closes = s.isFinal && p.kind == LEDGER;
        if (!closes) {
            if (records[id] != 0) revert AlreadyRegistered(id);
            if (p.kind == LEDGER) _requireOpen(id, s.outcome.assets);
        }
        _accept(id, p, s, sigs, uint64(block.timestamp) + p.challengeDuration, false);
    }

    /// Replaces the registered state with a newer one before the challenge period ends.
    /// The timeout stays: a refutation cannot prolong the dispute.
    function refute(Params calldata p, Dispute calldata registered, State calldata s, Signature[2] calldata sigs)
        external
    {
        bytes32 id = channelId(p);
        _requireChallengeOpen(id, registered);
        if (s.version <= registered.version) revert VersionNotNewer(registered.version, s.version);
        // A dispute left behind by a cooperative close must not look alive again.
        if (p.kind == LEDGER) _requireOpen(id, s.outcome.assets);
        _accept(id, p, s, sigs, registered.timeout, true);
    }

    /// After the challenge period, pays out a ledger channel's registered outcome and keeps
    /// its locked sub-allocations for `release`.
    function conclude(Params calldata p, Dispute calldata registered, Outcome calldata outcome) external {
        if (p.kind != LEDGER) revert WrongKind(p.kind);
        bytes32 id = channelId(p);
        _requireResolved(id, registered);
        if (outcomeHash(outcome) != registered.outcome) revert OutcomeMismatch();
        delete records[id];
        _concludeAndPay(id, p, outcome);
    }

    // ---------------------------------------------------------------- virtual channels

    /// Registers a stream channel's voucher, or a higher one while the challenge period runs.
    /// Only a higher voucher can follow, so the payer cannot refute; when the payee submits,
    /// it takes what it has and the channel resolves at once. A zero amount needs no signature.
    function registerVoucher(Params calldata vc, Dispute calldata registered, uint256 cumulative, Signature calldata sig)
        external
    {
        if (vc.kind != STREAM) revert WrongKind(vc.kind);
        bytes32 id = channelId(vc);
        uint64 timeout;
        if (records[id] == 0) {
            timeout = uint64(block.timestamp) + vc.challengeDuration;
        } else {
            _requireChallengeOpen(id, registered);
            if (cumulative <= uint256(registered.outcome)) {
                revert VoucherNotHigher(uint256(registered.outcome), cumulative);
            }
            timeout = registered.timeout;
        }
        if (cumulative != 0) _requireSigner(voucherDigest(id, cumulative), sig, vc.participants[0], 0);
        if (msg.sender == vc.participants[1]) timeout = uint64(block.timestamp);
        _storeRegistration(id, 0, timeout, bytes32(cumulative));
    }

    /// Releases a resolved virtual channel's sub-allocation from a concluded parent to the
    /// parent's participants, once per parent. Virtual participant 1 (the payee of a stream)
    /// gets its resolved amount capped at the locked total, participant 0 the rest; so the
    /// same resolution splits every parent the same way, and the intermediary, mapped to
    /// opposite sides in its two parents, gets back exactly what it locked.
    /// @param settled the parent's values from its latest `Concluded` or `Released` event
    /// @param vcOutcome the registered outcome of a virtual channel; empty for a stream channel
    function release(
        Params calldata parent,
        Settled calldata settled,
        SubAlloc calldata sub,
        bytes32[] calldata proof,
        Params calldata vc,
        Dispute calldata vcDispute,
        Outcome calldata vcOutcome
    ) external {
        bytes32 parentId = channelId(parent);
        uint256 n = settled.assets.length;
        if (n == 0 || holdings[parentId][settled.assets[0]] != _settledCommitment(settled.assets, settled.lockedRoot, settled.held)) {
            revert ParentNotConcluded(parentId);
        }
        bytes32 vcId = channelId(vc);
        if (sub.id != vcId || sub.balances.length != n) revert SubAllocMismatch();
        if (sub.indexMap[0] > 1 || sub.indexMap[1] > 1) revert InvalidIndexMap();
        if (_merkleRoot(lockedLeaf(sub), proof) != settled.lockedRoot) revert InvalidProof();
        _requireResolved(vcId, vcDispute);
        if (vc.kind == VIRTUAL) {
            if (outcomeHash(vcOutcome) != vcDispute.outcome) revert OutcomeMismatch();
        } else if (vc.kind != STREAM) {
            revert WrongKind(vc.kind);
        }

        uint256[2][] memory pays = new uint256[2][](n);
        uint256[] memory held = new uint256[](n);
        for (uint256 i; i < n; ++i) {
            uint256 total = sub.balances[i];
            uint256 toPayee = _min(_payeeAmount(vc.kind, vcDispute.outcome, vcOutcome, settled.assets, i), total);
            (pays[i], held[i]) = _split(settled.held[i], total - toPayee, toPayee);
        }
        bytes32 newRoot = _merkleRoot(RELEASED_LEAF, proof);
        holdings[parentId][settled.assets[0]] = _settledCommitment(settled.assets, newRoot, held);
        emit Released(parentId, vcId, newRoot, held);

        address receiver0 = parent.participants[sub.indexMap[0]];
        address receiver1 = parent.participants[sub.indexMap[1]];
        for (uint256 i; i < n; ++i) {
            _pay(receiver0, settled.assets[i], pays[i][0]);
            _pay(receiver1, settled.assets[i], pays[i][1]);
        }
    }

    // ---------------------------------------------------------------- withdrawals

    /// Pays the caller what failed to reach it by push.
    function withdraw(address asset) external {
        uint256 amount = credits[msg.sender][asset];
        if (amount == 0) revert NothingToWithdraw();
        credits[msg.sender][asset] = 0;
        if (!_transfer(msg.sender, asset, amount, gasleft())) revert TransferFailed();
    }

    // ---------------------------------------------------------------- hashing (shared with src/model)

    function channelId(Params calldata p) public view returns (bytes32) {
        return keccak256(abi.encode(block.chainid, address(this), p.participants, p.challengeDuration, p.nonce, p.kind));
    }

    function outcomeHash(Outcome calldata o) public pure returns (bytes32) {
        return keccak256(abi.encode(o.assets, o.balances, o.lockedRoot));
    }

    function lockedLeaf(SubAlloc calldata sub) public pure returns (bytes32) {
        return keccak256(abi.encode(sub.id, sub.balances, sub.indexMap));
    }

    function domainSeparator() public view returns (bytes32) {
        return block.chainid == cachedChainId ? cachedDomainSeparator : _buildDomainSeparator();
    }

    function stateDigest(bytes32 channelId_, State calldata s) external view returns (bytes32) {
        return _stateDigest(channelId_, s.version, outcomeHash(s.outcome), s.isFinal);
    }

    function voucherDigest(bytes32 channelId_, uint256 cumulative) public view returns (bytes32) {
        return _typedDataDigest(keccak256(abi.encode(VOUCHER_TYPEHASH, channelId_, cumulative)));
    }

    // ---------------------------------------------------------------- internals

    function _accept(
        bytes32 id,
        Params calldata p,
        State calldata s,
        Signature[2] calldata sigs,
        uint64 timeout,
        bool wasRegistered
    ) private {
        if (p.kind > VIRTUAL) revert WrongKind(p.kind);
        bytes32 oh = outcomeHash(s.outcome);
        bytes32 digest = _stateDigest(id, s.version, oh, s.isFinal);
        _requireSigner(digest, sigs[0], p.participants[0], 0);
        _requireSigner(digest, sigs[1], p.participants[1], 1);
        if (s.isFinal && p.kind == LEDGER) {
            if (wasRegistered) delete records[id];
            _concludeAndPay(id, p, s.outcome);
        } else {
            _storeRegistration(id, s.version, s.isFinal ? uint64(block.timestamp) : timeout, oh);
        }
    }

    function _storeRegistration(bytes32 id, uint64 version, uint64 timeout, bytes32 outcome) private {
        records[id] = keccak256(abi.encode(version, timeout, outcome));
        emit Registered(id, version, timeout, outcome);
    }

    /// Pays the free balances (capped by holdings, participant 0 first), keeps the rest for
    /// the locked sub-allocations and marks every funded asset concluded. Storage is settled
    /// before any external call.
    function _concludeAndPay(bytes32 id, Params calldata p, Outcome calldata o) private {
        uint256 n = o.assets.length;
        if (n == 0 || o.balances.length != n) revert LengthMismatch();
        uint256[2][] memory pays = new uint256[2][](n);
        uint256[] memory held = new uint256[](n);
        for (uint256 i; i < n; ++i) {
            mapping(address => uint256) storage slot = holdings[id];
            uint256 deposited = slot[o.assets[i]];
            if (deposited >= CONCLUDED) revert ChannelConcluded(id);
            (pays[i], held[i]) = _split(deposited, o.balances[i][0], o.balances[i][1]);
            // Marking each asset also stops a repeated asset from being paid twice.
            if (deposited != 0 || i == 0) slot[o.assets[i]] = CONCLUDED;
        }
        holdings[id][o.assets[0]] = _settledCommitment(o.assets, o.lockedRoot, held);
        emit Concluded(id, o.lockedRoot, held);
        for (uint256 i; i < n; ++i) {
            _pay(p.participants[0], o.assets[i], pays[i][0]);
            _pay(p.participants[1], o.assets[i], pays[i][1]);
        }
    }

    /// Takes up to (want0, want1) from `available`, first come first served, so a channel
    /// never pays out more than was deposited into it.
    function _split(uint256 available, uint256 want0, uint256 want1)
        private
        pure
        returns (uint256[2] memory paid, uint256 left)
    {
        paid[0] = _min(want0, available);
        paid[1] = _min(want1, available - paid[0]);
        left = available - paid[0] - paid[1];
    }

    function _settledCommitment(address[] calldata assets, bytes32 lockedRoot, uint256[] memory held)
        private
        pure
        returns (uint256)
    {
        return CONCLUDED | (uint256(keccak256(abi.encode(assets, lockedRoot, held))) >> 1);
    }

    /// What virtual participant 1 resolved to in the parent's asset i: for a stream, the
    /// voucher amount in the first asset (vouchers pay in asset 0); otherwise its balance in
    /// the registered outcome, matched by asset address.
    function _payeeAmount(
        uint8 kind,
        bytes32 registered,
        Outcome calldata vcOutcome,
        address[] calldata parentAssets,
        uint256 i
    ) private pure returns (uint256) {
        if (kind == STREAM) return i == 0 ? uint256(registered) : 0;
        for (uint256 j; j < vcOutcome.assets.length; ++j) {
            if (vcOutcome.assets[j] == parentAssets[i]) return vcOutcome.balances[j][1];
        }
        return 0;
    }

    function _requireOpen(bytes32 id, address[] calldata assets) private view {
        if (assets.length == 0) revert LengthMismatch();
        if (holdings[id][assets[0]] >= CONCLUDED) revert ChannelConcluded(id);
    }

    function _requireChallengeOpen(bytes32 id, Dispute calldata d) private view {
        if (records[id] != _registrationHash(d)) revert DisputeMismatch(id);
        if (block.timestamp >= d.timeout) revert ChallengePeriodOver(id);
    }

    function _requireResolved(bytes32 id, Dispute calldata d) private view {
        if (records[id] != _registrationHash(d)) revert DisputeMismatch(id);
        if (block.timestamp < d.timeout) revert ChallengePeriodRunning(id, d.timeout);
    }

    function _registrationHash(Dispute calldata d) private pure returns (bytes32) {
        return keccak256(abi.encode(d.version, d.timeout, d.outcome));
    }

    /// Sorted-pair Merkle fold, as src/model/locked.ts builds the tree.
    function _merkleRoot(bytes32 leaf, bytes32[] calldata proof) private pure returns (bytes32 node) {
        node = leaf;
        for (uint256 i; i < proof.length; ++i) {
            bytes32 sibling = proof[i];
            node = node <= sibling ? _hashPair(node, sibling) : _hashPair(sibling, node);
        }
    }

    function _hashPair(bytes32 a, bytes32 b) private pure returns (bytes32 h) {
        assembly ("memory-safe") {
            mstore(0x00, a)
            mstore(0x20, b)
            h := keccak256(0x00, 0x40)
        }
    }

    function _stateDigest(bytes32 id, uint64 version, bytes32 oh, bool isFinal) private view returns (bytes32) {
        return _typedDataDigest(keccak256(abi.encode(STATE_TYPEHASH, id, version, oh, isFinal)));
    }

    function _typedDataDigest(bytes32 structHash) private view returns (bytes32) {
        return keccak256(abi.encodePacked("\x19\x01", domainSeparator(), structHash));
    }

    function _buildDomainSeparator() private view returns (bytes32) {
        return keccak256(
            abi.encode(DOMAIN_TYPEHASH, keccak256("picopay"), keccak256("1"), block.chainid, address(this))
        );
    }

    /// Low-s, v in {27, 28}, and a non-zero signer equal to `expected`.
    function _requireSigner(bytes32 digest, Signature calldata sig, address expected, uint256 index) private pure {
        if (uint256(sig.s) > HALF_CURVE_ORDER || (sig.v != 27 && sig.v != 28)) revert InvalidSignature(index);
        address signer = ecrecover(digest, sig.v, sig.r, sig.s);
        if (signer == address(0) || signer != expected) revert InvalidSignature(index);
    }

    function _credit(bytes32 id, address asset, uint256 amount) private {
        uint256 held = holdings[id][asset];
        // A concluded channel pays nothing more out, so a late deposit would be stuck.
        if (held >= CONCLUDED) revert ChannelConcluded(id);
        held += amount;
        if (held >= CONCLUDED) revert HoldingsOverflow();
        holdings[id][asset] = held;
        emit Deposited(id, asset, held);
    }

    function _pull(address asset, uint256 amount) private {
        if (asset == address(0)) {
            if (msg.value != amount) revert ValueMismatch();
            return;
        }
        if (msg.value != 0) revert ValueMismatch();
        bool ok;
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, 0x23b872dd00000000000000000000000000000000000000000000000000000000) // transferFrom
            mstore(add(m, 0x04), caller())
            mstore(add(m, 0x24), address())
            mstore(add(m, 0x44), amount)
            ok := call(gas(), asset, 0, m, 0x64, 0x00, 0x20)
            ok := and(ok, or(and(eq(returndatasize(), 0), gt(extcodesize(asset), 0)), and(gt(returndatasize(), 31), eq(mload(0x00), 1))))
        }
        if (!ok) revert TransferFailed();
    }

    /// Pushes a payout; if the receiver or token refuses, credits it for `withdraw` instead,
    /// so one party cannot block the other's payout.
    function _pay(address to, address asset, uint256 amount) private {
        if (amount == 0) return;
        uint256 gasLimit = asset == address(0) ? ETH_PAYOUT_GAS : TOKEN_PAYOUT_GAS;
        if (!_transfer(to, asset, amount, gasLimit)) {
            credits[to][asset] += amount;
            emit Credited(to, asset, amount);
        }
    }

    /// ETH or ERC20 transfer that reports failure instead of reverting; reads at most one
    /// word of return data.
    function _transfer(address to, address asset, uint256 amount, uint256 gasLimit) private returns (bool ok) {
        assembly ("memory-safe") {
            switch asset
            case 0 { ok := call(gasLimit, to, amount, 0, 0, 0, 0) }
            default {
                let m := mload(0x40)
                mstore(m, 0xa9059cbb00000000000000000000000000000000000000000000000000000000) // transfer
                mstore(add(m, 0x04), to)
                mstore(add(m, 0x24), amount)
                ok := call(gasLimit, asset, 0, m, 0x44, 0x00, 0x20)
                ok := and(ok, or(and(eq(returndatasize(), 0), gt(extcodesize(asset), 0)), and(gt(returndatasize(), 31), eq(mload(0x00), 1))))
            }
        }
    }

    function _min(uint256 a, uint256 b) private pure returns (uint256) {
        return a < b ? a : b;
    }
}
