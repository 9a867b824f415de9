"""The REST adapter (FastAPI): :func:`aaa_fmip.api.app.create_app` builds the app over a
:class:`~aaa_fmip.api.context.ApiContext` (typed pieces the composition root hands it); the contract is
docs/api.md."""
