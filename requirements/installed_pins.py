"""Print ``name==version`` for each named distribution that is installed (pip constraints).

`make colab` passes these to pip so that installing the lesson set never upgrades,
downgrades or reinstalls what Colab pins (torch, its Jupyter kernel stack).
Usage: python requirements/installed_pins.py torch ipykernel ... > constraints.txt
"""

import contextlib
import sys
from importlib import metadata

for name in sys.argv[1:]:
    with contextlib.suppress(metadata.PackageNotFoundError):
        print(f"{name}=={metadata.version(name)}")
