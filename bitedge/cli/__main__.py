"""python -m bitedge.cli"""

import sys

from bitedge.cli import main

sys.exit(main())
