"""`python -m engine.zoo [NAME] [path]`: see engine.zoo.main."""
from engine.zoo import main

raise SystemExit(main())
