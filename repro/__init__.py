"""repro: a PaddlePaddle paper-reproduction harness."""
import warnings

# Paddle warns at import about a C++ extension cache it never uses here.
warnings.filterwarnings("ignore", message="No ccache found")

__version__ = "0.1.0"
