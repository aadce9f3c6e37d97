"""The bulk pipeline, one stage a module.

source (``_sources``, ``_files``, ``_parsers``) → validate (``_records``) → batch
(``_batching``) → frame (``_multipart``) → govern (``analytex_async.governors``) → send
(``analytex_async._transport``) → wait (``_jobs``), with ``_journal`` recording what the server
accepted; ``_pipeline`` runs the stages. Nothing here is public: ``AsyncAnalytex.import_users``
and friends are the way in.
"""
