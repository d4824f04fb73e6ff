"""Evidence both parties can verify: device keys, a signed hash chain, bundles, ``verify``.

Every record that counts for a contract or a KPI (final KPI records and their
revisions, stop events, gap reports, configuration audits, key records, and the
kinds listed in :data:`edge_agent.evidence.proof.CHAINED_KINDS`) is signed with
the device's Ed25519 key over an RFC 8785 (JCS) canonical header and linked to
the previous one by its SHA-256 hash, in the order of the outbox ``seq``. The
link is computed on the buffer's writer thread in the transaction that assigns
the ``seq`` (:mod:`.chain`), so it survives restarts and ``kill -9``.

Modules, each with one job:

* :mod:`.canonical`: RFC 8785 canonical bytes and SHA-256 digests;
* :mod:`.keys`: the device key pair in the state directory, rotation, fingerprints;
* :mod:`.proof`: the signed header and the envelope's ``proof`` object (shared by
  the signer and every verifier);
* :mod:`.chain`: linking and signing inside the outbox transaction (writer thread);
* :mod:`.audit`: the ``config`` audit record;
* :mod:`.bundle` / :mod:`.export`: the evidence bundle format and its writer;
* :mod:`.verify`: checks a bundle or a capture (pure; also for the collector).

``verify`` and the bundle reader import neither SQLite, MQTT nor the drivers:
they run from the wheel on a machine that never saw the gateway.
"""
