// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

/// @title picopay adjudicator
/// @notice Holds the deposits of two-party ledger channels and settles them: cooperatively
/// with a final state, or by dispute (register, refute, conclude). Virtual channels live
/// inside ledger channels as locked sub-allocations committed by a Merkle root; each one
/// is registered on its own and released into each concluded parent with a Merkle proof,
/// so its siblings never appear on-chain.
/// @dev Storage is kept to what an open dispute or a concluded channel must remember:
/// - `records[id]`: the registration: version, timeout and a stream's amount in one slot,
///   a ledger or virtual channel's outcome hash in a second. Version and amount are stored,
///   not only hashed, so a newer state or a higher voucher always lands whatever was
///   registered before it in the same block; a stream needs one fresh slot, not two.
/// - `holdings[id][asset]`: the deposits, below 2^255. Concluding sets bit 255 on every
///   asset of the outcome, so no deposit is accepted and nothing is paid twice; the slot of
///   the outcome's first asset then commits to the Settled values (what is kept for locked
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

    /// A registration, as `dispute` returns it and `Registered` emits it. `outcome` is the
    /// outcome hash, or for stream channels the cumulative amount paid. Unregistered: timeout 0.
    struct Dispute {
        uint64 version;
        uint64 timeout;
        bytes32 outcome;
    }

    /// A registration as stored. `cumulative` is a stream's voucher amount, capped at 2^128 - 1
    /// (a payout is capped at the locked total anyway); `outcomeHash` is zero for streams.
    struct Record {
        uint64 version;
        uint64 timeout;
        uint128 cumulative;
        bytes32 outcomeHash;
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
    error AmountOverflow();
    error TransferFailed();
    error UnsupportedToken(address asset);
    error DepositRefused(bytes32 channelId, address asset);
    error InvalidOutcome();
    error InvalidRecipient();
    error WrongKind(uint8 kind);
    error InvalidSignature(uint256 participant);
    error ChannelConcluded(bytes32 channelId);
    error NotRegistered(bytes32 channelId);
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
    /// A bidirectional virtual channel's registered outcome in full (the record keeps only its
    /// hash): what a party that does not hold the registered state needs to `release` it,
    /// whoever sent the registration and through whatever contract.
    event VirtualOutcome(bytes32 indexed channelId, uint64 version, Outcome outcome);
    event Concluded(bytes32 indexed channelId, bytes32 lockedRoot, uint256[] held);
    event Released(bytes32 indexed parentId, bytes32 indexed subId, bytes32 lockedRoot, uint256[] held);
    event Credited(address indexed account, address indexed asset, uint256 amount);
    /// A `depositMany` entry that was not taken (concluded channel, holdings full); refunded.
    event DepositSkipped(bytes32 indexed channelId, address indexed asset, uint256 amount);

    // ---------------------------------------------------------------- storage

    /// holdings[channelId][asset], see the contract's @dev note.
    mapping(bytes32 => mapping(address => uint256)) public holdings;
    /// Registration per channel, see the contract's @dev note and `dispute`.
    mapping(bytes32 => Record) internal records;
    /// Payouts whose push failed (reverting receiver, refusing token), for `withdraw`.
    mapping(address => mapping(address => uint256)) public credits;

    /// Bounds of the challenge period. A channel's own duration is clamped into them, so no
    /// duration can overflow a timeout, end a dispute before anyone can answer, or hold funds
    /// for longer than four weeks. One hour leaves time to answer across an outage of the
    /// RPC node or the watcher; four weeks is twice Lightning's usual largest delay (2016 blocks).
    uint64 public constant MIN_CHALLENGE_DURATION = 1 hours;
    uint64 public constant MAX_CHALLENGE_DURATION = 4 weeks;
    /// Assets per outcome: bounds every loop over an outcome (release is assets²).
    uint256 public constant MAX_ASSETS = 8;

    uint256 private constant CONCLUDED = 1 << 255;
    address private constant NATIVE = address(0);
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

    /// Funds a channel. Refused once the channel has concluded: it pays nothing more out.
    function deposit(bytes32 channelId_, address asset, uint256 amount) external payable {
        _pull(asset, amount);
        if (!_credit(channelId_, asset, amount)) revert DepositRefused(channelId_, asset);
    }

    /// Funds many channels in one transaction, with one token transfer. An entry that cannot
    /// be taken (concluded channel, holdings full) is skipped and refunded to the sender, so
    /// that no channel in a batch can make the whole batch fail.
    function depositMany(bytes32[] calldata channelIds, address asset, uint256[] calldata amounts) external payable {
        if (channelIds.length != amounts.length) revert LengthMismatch();
        uint256 total;
        for (uint256 i; i < amounts.length; ++i) {
            if (amounts[i] > type(uint256).max - total) revert AmountOverflow();
            total += amounts[i];
        }
        _pull(asset, total);
        uint256 refund;
        for (uint256 i; i < channelIds.length; ++i) {
            if (!_credit(channelIds[i], asset, amounts[i])) {
                refund += amounts[i];
                emit DepositSkipped(channelIds[i], asset, amounts[i]);
            }
        }
        _pay(msg.sender, asset, refund);
    }

    // ---------------------------------------------------------------- states: register, refute, conclude

    /// Registers a state signed by both participants, or replaces the registered one with a
    /// newer one while the challenge period runs (the refutation; its timeout stays, so a
    /// refutation cannot prolong the dispute). A final state resolves at once; a ledger
    /// channel's final state is the cooperative close and pays out in this transaction,
    /// even while an older state is registered.
    function register(Params calldata p, State calldata s, Signature[2] calldata sigs) external {
        if (p.kind > VIRTUAL) revert WrongKind(p.kind);
        _requireValidOutcome(s.outcome);
        // A virtual channel locks nothing itself; a root would only hide its outcome.
        if (p.kind == VIRTUAL && s.outcome.lockedRoot != bytes32(0)) revert InvalidOutcome();
        bytes32 id = channelId(p);
        if (p.kind == LEDGER) _requireOpen(id, s.outcome.assets);
        bytes32 oh = outcomeHash(s.outcome);
        bytes32 digest = _stateDigest(id, s.version, oh, s.isFinal);
        _requireSigner(digest, sigs[0], p.participants[0], 0);
        _requireSigner(digest, sigs[1], p.participants[1], 1);
        if (s.isFinal && p.kind == LEDGER) {
            // A dispute this close ends stays behind as a record that can do nothing: every
            // asset is concluded. Not clearing it keeps the cooperative close cheap.
            _concludeAndPay(id, p, s.outcome);
            return;
        }
        Record storage r = records[id];
        uint64 timeout = r.timeout;
        if (timeout == 0) {
            timeout = uint64(block.timestamp) + challengePeriod(p.challengeDuration);
        } else {
            if (block.timestamp >= timeout) revert ChallengePeriodOver(id);
            if (s.version <= r.version) revert VersionNotNewer(r.version, s.version);
        }
        if (s.isFinal) timeout = uint64(block.timestamp);
        records[id] = Record(s.version, timeout, 0, oh);
        emit Registered(id, s.version, timeout, oh);
        if (p.kind == VIRTUAL) emit VirtualOutcome(id, s.version, s.outcome);
    }

    /// After the challenge period, pays out a ledger channel's registered outcome and keeps
    /// its locked sub-allocations for `release`.
    function conclude(Params calldata p, Outcome calldata outcome) external {
        if (p.kind != LEDGER) revert WrongKind(p.kind);
        bytes32 id = channelId(p);
        if (outcomeHash(outcome) != _requireResolved(id).outcomeHash) revert OutcomeMismatch();
        delete records[id];
        _concludeAndPay(id, p, outcome);
    }

    // ---------------------------------------------------------------- virtual channels

    /// Registers a stream channel's voucher, or a higher one while the challenge period runs.
    /// Only a higher voucher can follow, so the payer cannot refute; when the payee submits,
    /// it takes what it has and the channel resolves at once (restating the registered
    /// amount is enough, should someone else have submitted the payee's voucher first). A
    /// zero amount needs no signature.
    function registerVoucher(Params calldata vc, uint256 cumulative, Signature calldata sig) external {
        if (vc.kind != STREAM) revert WrongKind(vc.kind);
        bytes32 id = channelId(vc);
        Record storage r = records[id];
        uint64 timeout = r.timeout;
        bool byPayee = msg.sender == vc.participants[1];
        uint128 capped = cumulative > type(uint128).max ? type(uint128).max : uint128(cumulative);
        if (timeout == 0) {
            timeout = uint64(block.timestamp) + challengePeriod(vc.challengeDuration);
        } else {
            if (block.timestamp >= timeout) revert ChallengePeriodOver(id);
            uint128 registered = r.cumulative;
            if (capped < registered || (capped == registered && !byPayee)) revert VoucherNotHigher(registered, cumulative);
        }
        if (cumulative != 0) _requireSigner(voucherDigest(id, cumulative), sig, vc.participants[0], 0);
        if (byPayee) timeout = uint64(block.timestamp);
        records[id] = Record(0, timeout, capped, 0);
        emit Registered(id, 0, timeout, bytes32(uint256(capped)));
    }

    /// Releases a resolved virtual channel's sub-allocation from a concluded parent to the
    /// parent's participants, once per parent. Virtual participant 1 (the payee of a stream)
    /// gets its resolved amount capped at the locked total, participant 0 the rest; so the
    /// same resolution splits every parent the same way, and the intermediary, mapped to
    /// opposite sides in its two parents, gets back exactly what it locked.
    /// @param settled the parent's values from its latest `Concluded` or `Released` event
    /// @param vcOutcome the registered outcome of a virtual channel; ignored for a stream channel
    function release(
        Params calldata parent,
        Settled calldata settled,
        SubAlloc calldata sub,
        bytes32[] calldata proof,
        Params calldata vc,
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
        Record storage resolved = _requireResolved(vcId);
        if (vc.kind == VIRTUAL) {
            if (outcomeHash(vcOutcome) != resolved.outcomeHash) revert OutcomeMismatch();
        } else if (vc.kind != STREAM) {
            revert WrongKind(vc.kind);
        }

        uint256[2][] memory pays = new uint256[2][](n);
        uint256[] memory held = new uint256[](n);
        for (uint256 i; i < n; ++i) {
            uint256 total = sub.balances[i];
            uint256 toPayee = _min(_payeeAmount(vc.kind, resolved.cumulative, vcOutcome, settled.assets, i), total);
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

    /// Pays what failed to reach the caller by push to `to`: an account that cannot take the
    /// asset itself (a contract with no receive, an address a token blocks) names another.
    function withdraw(address asset, address to) external {
        if (to == address(0)) revert InvalidRecipient();
        uint256 amount = credits[msg.sender][asset];
        if (amount == 0) revert NothingToWithdraw();
        credits[msg.sender][asset] = 0;
        if (!_transfer(to, asset, amount, gasleft())) revert TransferFailed();
    }

    // ---------------------------------------------------------------- hashing (shared with src/model)

    /// The challenge period a channel gets: its duration clamped into the contract's bounds.
    function challengePeriod(uint64 duration) public pure returns (uint64) {
        if (duration < MIN_CHALLENGE_DURATION) return MIN_CHALLENGE_DURATION;
        if (duration > MAX_CHALLENGE_DURATION) return MAX_CHALLENGE_DURATION;
        return duration;
    }

    /// The channel's registration, as emitted in its latest `Registered` (timeout 0: none).
    function dispute(bytes32 channelId_) external view returns (Dispute memory) {
        Record storage r = records[channelId_];
        bytes32 outcome = r.outcomeHash == 0 ? bytes32(uint256(r.cumulative)) : r.outcomeHash;
        return Dispute(r.version, r.timeout, outcome);
    }

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

    /// What two signers can sign must never block a close, a conclusion or a release, so an
    /// outcome's shape is checked where it enters: 1 to MAX_ASSETS distinct assets and one
    /// balance pair per asset. (Amounts need no check: payouts are capped by holdings.)
    function _requireValidOutcome(Outcome calldata o) private pure {
        uint256 n = o.assets.length;
        if (n == 0 || n > MAX_ASSETS || o.balances.length != n) revert InvalidOutcome();
        for (uint256 i = 1; i < n; ++i) {
            for (uint256 j; j < i; ++j) {
                if (o.assets[i] == o.assets[j]) revert InvalidOutcome();
            }
        }
    }

    /// Pays the free balances (capped by holdings, participant 0 first), keeps the rest for
    /// the locked sub-allocations and marks every asset of the outcome concluded, funded or
    /// not, so none takes deposits or registrations again. The outcome was validated when it
    /// entered. Storage is settled before any external call.
    function _concludeAndPay(bytes32 id, Params calldata p, Outcome calldata o) private {
        uint256 n = o.assets.length;
        uint256[2][] memory pays = new uint256[2][](n);
        uint256[] memory held = new uint256[](n);
        mapping(address => uint256) storage slot = holdings[id];
        bool listsNative;
        for (uint256 i; i < n; ++i) {
            address asset = o.assets[i];
            uint256 deposited = slot[asset];
            if (deposited >= CONCLUDED) revert ChannelConcluded(id);
            (pays[i], held[i]) = _split(deposited, o.balances[i][0], o.balances[i][1]);
            // The first asset's slot gets the Settled commitment below.
            if (i != 0) slot[asset] = CONCLUDED;
            if (asset == NATIVE) listsNative = true;
        }
        // The ETH slot is the channel's flag: concluded whatever the outcome lists, so no
        // state with other assets can conclude the channel again.
        if (!listsNative) {
            if (slot[NATIVE] >= CONCLUDED) revert ChannelConcluded(id);
            slot[NATIVE] = CONCLUDED;
        }
        slot[o.assets[0]] = _settledCommitment(o.assets, o.lockedRoot, held);
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
        uint256 cumulative,
        Outcome calldata vcOutcome,
        address[] calldata parentAssets,
        uint256 i
    ) private pure returns (uint256) {
        if (kind == STREAM) return i == 0 ? cumulative : 0;
        for (uint256 j; j < vcOutcome.assets.length; ++j) {
            if (vcOutcome.assets[j] == parentAssets[i]) return vcOutcome.balances[j][1];
        }
        return 0;
    }

    /// A ledger state may enter only while the channel (its ETH slot, see _concludeAndPay)
    /// and none of its assets has concluded: an old state never concludes a channel again.
    function _requireOpen(bytes32 id, address[] calldata assets) private view {
        mapping(address => uint256) storage slot = holdings[id];
        bool listsNative;
        for (uint256 i; i < assets.length; ++i) {
            if (slot[assets[i]] >= CONCLUDED) revert ChannelConcluded(id);
            if (assets[i] == NATIVE) listsNative = true;
        }
        if (!listsNative && slot[NATIVE] >= CONCLUDED) revert ChannelConcluded(id);
    }

    /// The registration of a channel whose challenge period is over.
    function _requireResolved(bytes32 id) private view returns (Record storage r) {
        r = records[id];
        uint64 timeout = r.timeout;
        if (timeout == 0) revert NotRegistered(id);
        if (block.timestamp < timeout) revert ChallengePeriodRunning(id, timeout);
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

    /// Adds a deposit and returns true, or changes nothing and returns false when the channel
    /// has concluded (it pays nothing more out, so the deposit would be stuck) or its holdings
    /// would reach 2^255.
    function _credit(bytes32 id, address asset, uint256 amount) private returns (bool) {
        uint256 held = holdings[id][asset];
        if (held >= CONCLUDED || amount >= CONCLUDED - held) return false;
        held += amount;
        holdings[id][asset] = held;
        emit Deposited(id, asset, held);
        return true;
    }

    function _pull(address asset, uint256 amount) private {
        if (asset == NATIVE) {
            if (msg.value != amount) revert ValueMismatch();
            return;
        }
        if (msg.value != 0) revert ValueMismatch();
        if (amount == 0) return;
        // Holdings must be backed by what arrived: a token that takes a fee on transfer, or
        // re-enters to move this contract's balance, is refused.
        uint256 before = _balanceOf(asset);
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
        if (_balanceOf(asset) != before + amount) revert UnsupportedToken(asset);
    }

    /// This contract's balance of a token; a token that cannot answer is not supported.
    function _balanceOf(address asset) private view returns (uint256 held) {
        bool ok;
        assembly ("memory-safe") {
            mstore(0x00, 0x70a0823100000000000000000000000000000000000000000000000000000000) // balanceOf
            mstore(0x04, address())
            ok := staticcall(gas(), asset, 0x00, 0x24, 0x00, 0x20)
            ok := and(ok, gt(returndatasize(), 31))
            held := mload(0x00)
        }
        if (!ok) revert UnsupportedToken(asset);
    }

    /// Pushes a payout; if the receiver or token refuses, credits it for `withdraw` instead,
    /// so one party cannot block the other's payout.
    function _pay(address to, address asset, uint256 amount) private {
        if (amount == 0) return;
        uint256 gasLimit = asset == NATIVE ? ETH_PAYOUT_GAS : TOKEN_PAYOUT_GAS;
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
