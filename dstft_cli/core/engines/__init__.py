"""The engines of :func:`dstft_cli.core.transform.dstft`, one module per engine.

``transform.ENGINES`` is the table that picks one; ``native`` is the only module that calls the
C module ``_frames``; ``common`` holds what several engines share.
"""
