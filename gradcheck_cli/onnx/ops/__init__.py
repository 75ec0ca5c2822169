"""Op implementations, one module per family; importing this package registers them all."""

from . import (  # noqa: F401
    activation,
    attention,
    control,
    conv_pool,
    elementwise,
    indexing,
    loss,
    misc,
    nn,
    quant,
    random,
    reduce,
    resize,
    rnn,
    shape,
    vision,
)
