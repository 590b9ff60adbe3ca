import sys

from live_demo.demo import main

sys.exit(main())
