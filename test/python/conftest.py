import os
import sys

# Run against the checkout even when the package is not installed.
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "python"))
