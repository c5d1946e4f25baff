from mmops.cli import main

raise SystemExit(main())
