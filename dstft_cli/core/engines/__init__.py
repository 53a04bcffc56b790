"""The engines of :func:`dstft_cli.core.transform.dstft`, one module per engine.

``transform.ENGINES`` is the table that picks one; ``native`` is the only module that calls the
C modules ``_frames`` and ``_losses``; ``common`` holds what several engines share.
"""
