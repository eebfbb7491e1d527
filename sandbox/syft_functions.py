"""The one function the platform submits to a provider's PySyft Datasite for every job.

PySyft reads a submitted function's source text and executes it on the Datasite, so it
lives in a source file and stays tiny: it hands the node's private data, the job binding
the provider approved (fixed when the code request was made) and one call from the
coordinator to `sandbox.node_side.node_call`, which runs a vetted operator in the node's
sandbox and returns only the encoded outcome (an encrypted partial or a failure code).

No annotations: PySyft checks the caller's arguments against them (the data argument is
an asset pointer on the caller's side), serialises them, and executes the source in an
empty namespace. `node_call` checks the types on the node instead.
"""


def pdx_node_call(data, binding, call):  # type: ignore[no-untyped-def]
    """Executed on the provider's node: run one call of an approved job (see module doc)."""
    from sandbox.node_side import node_call

    return node_call(data, binding, call)
