"""The REST adapter (FastAPI): :func:`aaa_fmip.api.app.create_app` builds the app over a
:class:`~aaa_fmip.bootstrap.Runtime`; the contract is docs/api.md."""
