# pragma version ~=0.4.3
# pragma evm-version paris
"""
@title pdx ledger anchor
@notice Stores (log origin, tree size, root hash) for RFC 9162 logs. A registered writer
        may move a log's anchor forward only with a consistency proof from the last
        anchored root, checked here (SHA-256 precompile), so a rewritten log is refused.
"""

MAX_PROOF: constant(uint256) = 64

struct Anchor:
    size: uint256
    root: bytes32

event Anchored:
    origin_key: indexed(bytes32)
    index: uint256
    size: uint256
    root: bytes32

event WriterSet:
    writer: indexed(address)
    allowed: bool

owner: public(address)
writers: public(HashMap[address, bool])
anchors: HashMap[bytes32, HashMap[uint256, Anchor]]
counts: HashMap[bytes32, uint256]


@deploy
def __init__():
    self.owner = msg.sender


@external
def set_writer(writer: address, allowed: bool):
    assert msg.sender == self.owner, "only the owner registers writers"
    self.writers[writer] = allowed
    log WriterSet(writer=writer, allowed=allowed)


@pure
@internal
def _node(left: bytes32, right: bytes32) -> bytes32:
    # RFC 9162 2.1.1: an interior node is SHA-256(0x01 || left || right).
    return sha256(concat(b"\x01", left, right))


@pure
@internal
def _consistent(
    first: uint256, second: uint256, first_root: bytes32, second_root: bytes32,
    proof: DynArray[bytes32, MAX_PROOF]
) -> bool:
    # RFC 9162 2.1.4.2, for 0 < first < second.
    if first == 0 or first >= second or len(proof) == 0:
        return False
    fn: uint256 = first - 1
    sn: uint256 = second - 1
    fr: bytes32 = empty(bytes32)
    skip: bool = False
    # Step 1: a power-of-two first tree is itself a node of the second tree.
    if first & (first - 1) == 0:
        fr = first_root
    else:
        fr = proof[0]
        skip = True
    sr: bytes32 = fr
    # Step 4: right-shift while LSB(fn) is set.
    for _: uint256 in range(256):
        if fn & 1 == 0:
            break
        fn = fn >> 1
        sn = sn >> 1
    for c: bytes32 in proof:
        if skip:
            skip = False
            continue
        if sn == 0:
            return False
        if fn & 1 == 1 or fn == sn:
            fr = self._node(c, fr)
            sr = self._node(c, sr)
            for _: uint256 in range(256):
                if fn & 1 == 1 or fn == 0:
                    break
                fn = fn >> 1
                sn = sn >> 1
        else:
            sr = self._node(sr, c)
        fn = fn >> 1
        sn = sn >> 1
    return fr == first_root and sr == second_root and sn == 0


@external
def anchor(origin: String[255], size: uint256, root: bytes32, proof: DynArray[bytes32, MAX_PROOF]):
    """
    @notice Anchor `root` as the log's tree of `size` leaves. The first anchor of an origin
            is taken as given; each later one must prove the last anchored tree a prefix.
    """
    assert self.writers[msg.sender], "not a registered writer"
    assert size > 0, "an empty tree is not anchored"
    key: bytes32 = keccak256(origin)
    count: uint256 = self.counts[key]
    if count > 0:
        last: Anchor = self.anchors[key][count - 1]
        assert size > last.size, "tree size does not grow"
        assert self._consistent(last.size, size, last.root, root, proof), "not consistent with the last anchored root"
    self.anchors[key][count] = Anchor(size=size, root=root)
    self.counts[key] = count + 1
    log Anchored(origin_key=key, index=count, size=size, root=root)


@view
@external
def anchor_count(origin: String[255]) -> uint256:
    return self.counts[keccak256(origin)]


@view
@external
def anchor_at(origin: String[255], index: uint256) -> (uint256, bytes32):
    assert index < self.counts[keccak256(origin)], "no such anchor"
    a: Anchor = self.anchors[keccak256(origin)][index]
    return a.size, a.root


@view
@external
def latest(origin: String[255]) -> (uint256, bytes32):
    count: uint256 = self.counts[keccak256(origin)]
    if count == 0:
        return 0, empty(bytes32)
    a: Anchor = self.anchors[keccak256(origin)][count - 1]
    return a.size, a.root
