"""Data out: export jobs of the appex host, their files, and lookups.

``ExportCalls`` (``_calls``) is what ``AsyncAnalytex`` holds and hands its export methods to;
``_query`` checks what a caller asks for, ``_models`` reads what the server answers,
``_download`` fetches the signed links (never with the API key) and ``_formats`` reads the
files they hold, one event at a time.
"""
