import sys

from crossmargin.cli.main import main

sys.exit(main())
