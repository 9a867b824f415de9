"""RADIUS adapters (architecture.md §6, docs/freeradius.md).

* :mod:`.freeradius_module` — the rlm_python3 entry points; :mod:`.plugin` — their logic;
  :mod:`.attributes` — the attribute lists FreeRADIUS passes, parsed.
* :mod:`.dictionary` — the vendor dictionary (FreeRADIUS format, also read by pyrad).
* :mod:`.salt` — RFC 2548 salt encryption of the pushed handover key; :mod:`.ar` — the access router's decoder.
* :mod:`.accounting` — revocation on Accounting Stop, and the ``aaa-fmip radius-accounting`` listener.
* :mod:`.freeradius_config` — the configuration ``aaa-fmip freeradius-config`` prints or installs.
"""
