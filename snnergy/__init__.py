"""SNNergy: audio-visual spiking transformer with Cross-Modal Q-K Attention (model, data, training)."""

import logging

# torch 2.13 CPU warns once per process that Triton (a GPU compiler) is absent; SpikingJelly
# triggers the check on import. It is noise on CPU machines, so keep it out of CLI output.
logging.getLogger("torch._library.triton").setLevel(logging.ERROR)

__version__ = "0.1.0"
