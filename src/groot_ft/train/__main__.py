import sys

from groot_ft.train.entry import main

sys.exit(main())
