"""Public datasets several papers share: where their files live, md5 checks,
atomic downloads from the official URLs, and readers that never run code
from a file (download.py; mnist.py, cifar10.py)."""
