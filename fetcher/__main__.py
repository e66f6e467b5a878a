from fetcher.cli import main

main()
