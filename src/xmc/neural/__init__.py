"""Neural building blocks shared by the transformer models (X-Transformer, label masking, GUDN, XDA).

Importing this package imports torch; the linear path (``xmc.models.xr_linear``) never does.
"""
