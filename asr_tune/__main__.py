from asr_tune.cli import main

raise SystemExit(main())
