"""Anchoring checkpoints on an EVM chain: the anchor contract, a writer, a reader, a schedule.

`ledger/contracts/anchor.vy` (Vyper) stores (log origin, tree size, root hash) and moves
an origin's anchor forward only for a registered writer and only with an RFC 9162
consistency proof from the last anchored root, checked on chain with the SHA-256
precompile: a rewritten, larger tree is refused by the chain itself. `anchor.json`
beside it is the compiled ABI and bytecode (a test recompiles the source with the
pinned Vyper and checks they are equal), so running needs no compiler.

The chain is reached through `web3.py`: any JSON-RPC node of an EVM chain (Hyperledger
Besu with QBFT, FISCO BCOS or ChainMaker in EVM mode, ganache), or the embedded default,
an in-process `eth-tester` chain on `py-evm`. The embedded chain is the operator's own,
in memory, and adds no independent trust: only a chain whose nodes other organisations
run can contradict the operator.

Transactions are signed with `eth-account` from the KMS's chain-signing key
(`crypto.unsafe_export_chain_key`; see its docstring for the trade-off).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ledger.errors import AnchorError, AnchorRefused

__all__ = [
    "ARTIFACT_PATH",
    "SOURCE_PATH",
    "AnchorSchedule",
    "ChainAnchors",
    "ChainWriter",
    "compile_contract",
    "connect",
    "contract_artifact",
    "open_writer",
]

SOURCE_PATH: Final = Path(__file__).parent / "contracts" / "anchor.vy"
ARTIFACT_PATH: Final = Path(__file__).parent / "contracts" / "anchor.json"
# The contract's DynArray bound: a consistency proof between trees below 2**32 leaves
# has at most 2 * 32 hashes.
MAX_PROOF: Final = 64
_FUNDING_WEI: Final = 10**20

log = logging.getLogger(__name__)


def compile_contract() -> dict[str, Any]:
    """Compile `anchor.vy` in-process with the pinned Vyper (no downloaded compiler)."""
    import vyper  # build/test time only

    out = vyper.compile_code(SOURCE_PATH.read_text(), output_formats=["abi", "bytecode"])
    return {"vyper": vyper.__version__, "abi": out["abi"], "bytecode": out["bytecode"]}


def contract_artifact() -> dict[str, Any]:
    """The committed compile output: {"vyper", "abi", "bytecode"}."""
    artifact: dict[str, Any] = json.loads(ARTIFACT_PATH.read_text())
    return artifact


def connect(url: str | None, *, timeout_s: float = 10.0) -> Any:
    """A `Web3` for a JSON-RPC `url`, or a fresh embedded eth-tester chain for None."""
    from web3 import HTTPProvider, Web3

    if url is None:
        from eth_tester import EthereumTester, PyEVMBackend
        from web3 import EthereumTesterProvider

        return Web3(EthereumTesterProvider(EthereumTester(PyEVMBackend())))
    return Web3(HTTPProvider(url, request_kwargs={"timeout": timeout_s}))


def _revert_errors() -> tuple[type[BaseException], ...]:
    from web3.exceptions import ContractLogicError

    errors: list[type[BaseException]] = [ContractLogicError]
    try:
        from eth_tester.exceptions import TransactionFailed

        errors.append(TransactionFailed)
    except ImportError:  # pragma: no cover - eth-tester is installed with the embedded chain
        pass
    return tuple(errors)


class ChainAnchors:
    """Reads anchored (size, root) pairs of a log from the contract at `address`."""

    def __init__(self, w3: Any, address: str) -> None:
        self.w3 = w3
        self.address = w3.to_checksum_address(address)
        self.contract = w3.eth.contract(address=self.address, abi=contract_artifact()["abi"])

    def anchors(self, origin: str) -> list[tuple[int, bytes]]:
        """Every anchor of `origin`, in the order they were accepted (growing sizes)."""
        count = int(self.contract.functions.anchor_count(origin).call())
        result: list[tuple[int, bytes]] = []
        for i in range(count):
            size, root = self.contract.functions.anchor_at(origin, i).call()
            result.append((int(size), bytes(root)))
        return result

    def latest(self, origin: str) -> tuple[int, bytes]:
        size, root = self.contract.functions.latest(origin).call()
        return int(size), bytes(root)


class ChainWriter:
    """Sends anchor transactions signed with one secp256k1 key (the KMS chain-signing key)."""

    def __init__(
        self, w3: Any, private_scalar: bytes, *, address: str | None = None, wait_s: float = 30.0
    ) -> None:
        from eth_account import Account

        self.w3 = w3
        self._account = Account.from_key(private_scalar)
        self._wait_s = wait_s
        self._lock = threading.Lock()
        self.reader: ChainAnchors | None = None
        if address is not None:
            self.reader = ChainAnchors(w3, address)

    @property
    def account(self) -> str:
        """The writer's chain address (Keccak-256 of the public key, last 20 bytes)."""
        return str(self._account.address)

    def fund_from_node(self, wei: int = _FUNDING_WEI) -> None:
        """Top up from the node's first unlocked account (eth-tester, ganache, dev nodes).

        Consortium chains usually run with gas price 0 and need no funding.
        """
        if self.w3.eth.get_balance(self.account) >= wei // 2:
            return
        accounts = self.w3.eth.accounts
        if not accounts:
            return
        tx = self.w3.eth.send_transaction({"from": accounts[0], "to": self.account, "value": wei})
        self.w3.eth.wait_for_transaction_receipt(tx, timeout=self._wait_s)

    def deploy(self) -> str:
        """Deploy the anchor contract (this key is its owner) and register this key as writer."""
        artifact = contract_artifact()
        factory = self.w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
        receipt = self._send(factory.constructor())
        address = str(receipt["contractAddress"])
        self.reader = ChainAnchors(self.w3, address)
        self.set_writer(self.account, True)
        return address

    def set_writer(self, writer: str, allowed: bool) -> None:
        self._send(self._contract().functions.set_writer(writer, allowed))

    def anchor(self, origin: str, size: int, root: bytes, proof: Sequence[bytes]) -> str:
        """Anchor (size, root); `AnchorRefused` with the chain's reason if it reverts."""
        if len(proof) > MAX_PROOF:
            raise AnchorError("consistency proof is longer than the contract accepts")
        receipt = self._send(self._contract().functions.anchor(origin, size, root, list(proof)))
        return str(receipt["transactionHash"].hex())

    def _contract(self) -> Any:
        if self.reader is None:
            raise AnchorError("no anchor contract: deploy one or configure its address")
        return self.reader.contract

    def _send(self, call: Any) -> Any:
        from eth_account import Account

        with self._lock:
            try:
                tx = call.build_transaction(
                    {
                        "from": self.account,
                        "nonce": self.w3.eth.get_transaction_count(self.account, "pending"),
                        "chainId": self.w3.eth.chain_id,
                    }
                )
            except _revert_errors() as exc:  # gas estimation runs the call: a revert
                raise AnchorRefused(f"the chain refused: {_reason(exc)}") from None
            signed = Account.sign_transaction(tx, self._account.key)
            try:
                sent = self.w3.eth.send_raw_transaction(signed.raw_transaction)
            except _revert_errors() as exc:
                raise AnchorRefused(f"the chain refused: {_reason(exc)}") from None
            receipt = self.w3.eth.wait_for_transaction_receipt(sent, timeout=self._wait_s)
        if receipt["status"] != 1:
            raise AnchorRefused("the anchor transaction reverted")
        return receipt


def _reason(exc: BaseException) -> str:
    text = str(exc.args[0]) if exc.args else str(exc)
    return text.removeprefix("execution reverted: ")


@dataclass
class AnchorSchedule:
    """Anchor once `every_blocks` blocks were sealed since the last anchor, or `every_s` passed."""

    every_blocks: int = 10
    every_s: float = 5.0

    def due(self, blocks_since: int, seconds_since: float) -> bool:
        return blocks_since > 0 and (
            blocks_since >= self.every_blocks or seconds_since >= self.every_s
        )


class Anchorer:
    """Anchors the newest checkpoint with a proof from the chain's last anchored tree.

    `proof(first, second)` gives the RFC 9162 consistency proof from the log (the caller
    reads it in its own short read transaction); no database transaction is open while
    the chain is called.
    """

    def __init__(
        self,
        writer: ChainWriter,
        origin: str,
        proof: Callable[[int, int], list[bytes]],
        schedule: AnchorSchedule,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.writer = writer
        self.origin = origin
        self._proof = proof
        self.schedule = schedule
        self._clock = clock
        self._blocks_since = 0
        self._count = threading.Lock()  # sealers count from their threads
        self._last_at = clock()
        self.anchored_size = 0
        self.refusals: list[str] = []

    def sealed(self, blocks: int) -> None:
        with self._count:
            self._blocks_since += blocks

    def due(self) -> bool:
        return self.schedule.due(self._blocks_since, self._clock() - self._last_at)

    def _settled(self, counted: int) -> None:
        # Only the blocks counted before this anchor began are settled: a seal during the
        # chain call stays counted, or the newest checkpoint would wait for another seal.
        with self._count:
            self._blocks_since = max(0, self._blocks_since - counted)

    @property
    def pending(self) -> int:
        """Blocks sealed since the last anchor (read it before reading the checkpoint)."""
        return self._blocks_since

    def anchor(self, size: int, root: bytes, *, counted: int | None = None) -> bool:
        """Anchor (size, root) now; False (and the refusal kept and logged) if refused.

        `counted`: `pending` as read before the checkpoint was (default: now).
        """
        reader = self.writer.reader
        if reader is None:
            raise AnchorError("no anchor contract")
        counted = self._blocks_since if counted is None else counted
        last_size, _ = reader.latest(self.origin)
        if size <= last_size:
            self._settled(counted)
            return False
        proof = self._proof(last_size, size) if last_size else []
        try:
            self.writer.anchor(self.origin, size, root, proof)
        except AnchorRefused as exc:
            self.refusals.append(exc.detail)
            log.warning("anchor of tree size %d refused: %s", size, exc.detail)
            return False
        self._settled(counted)
        self._last_at = self._clock()
        self.anchored_size = size
        return True


def open_writer(
    url: str | None,
    private_scalar: bytes,
    *,
    contract: str | None = None,
    record: Path | None = None,
    wait_s: float = 30.0,
) -> ChainWriter:
    """A writer on the chain at `url` (None: a fresh embedded chain) with its contract.

    The contract is `contract` if given (it must exist), else the one recorded in
    `record` for this chain, else a new one deployed now (this key owns it and is its
    first writer) and recorded (not for the embedded chain, which lives in this process).
    Call with no database transaction open.
    """
    w3 = connect(url)
    writer = ChainWriter(w3, private_scalar, wait_s=wait_s)
    try:
        writer.fund_from_node()  # dev nodes and eth-tester; consortium chains need no gas
    except Exception as exc:  # e.g. eth_accounts disabled on the node
        log.info("no funding from the node: %s", exc.__class__.__name__)
    chain = url or "embedded"
    chain_id = int(w3.eth.chain_id)
    address = contract
    if address is None and url is not None and record is not None and record.exists():
        known = json.loads(record.read_text())
        if known.get("chain") == chain and known.get("chain_id") == chain_id:
            address = str(known["contract"])
    if address is not None and not w3.eth.get_code(w3.to_checksum_address(address)):
        if contract is not None:
            raise AnchorError(f"no anchor contract at {contract} on {chain}")
        log.warning("the recorded anchor contract %s is gone from %s; deploying", address, chain)
        address = None
    if address is None:
        address = writer.deploy()
        log.info("anchor contract deployed at %s on %s", address, chain)
        if record is not None and url is not None:  # an embedded chain dies with us
            data = {"chain": chain, "chain_id": chain_id, "contract": address}
            data["writer"] = writer.account
            tmp = record.with_name(f".{record.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(data, indent=2) + "\n")
            tmp.replace(record)
    else:
        writer.reader = ChainAnchors(w3, address)
    return writer
