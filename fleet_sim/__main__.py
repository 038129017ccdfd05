from fleet_sim.cli import main

raise SystemExit(main())
