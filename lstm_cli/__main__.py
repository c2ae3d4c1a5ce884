import sys

from lstm_cli.cli import main

sys.exit(main())
