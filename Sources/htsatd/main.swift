import Daemon

HTSATD.main()
