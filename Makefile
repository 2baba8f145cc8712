.PHONY: run test ops-test cluster-test bench services clean

run:        ## build, migrate, load demo movies and serve on :8000 (embedded storage)
	bash scripts/run.sh

test:       ## start MariaDB/Redis/RabbitMQ, build, cargo test + pytest
	bash scripts/test.sh

ops-test:   ## only the operations drills (deploy files, wheel, reload, rolling restart, backups)
	bash scripts/test.sh -m ops tests/ops

cluster-test:  ## drills on test hosts (network namespaces): nginx, 2 app hosts, MariaDB primary+replica, Redis+Sentinels, 3 RabbitMQ nodes
	bash scripts/test.sh -m cluster tests/cluster

bench:      ## benchmarks (pytest-benchmark + load runs); prints ratios
	bash scripts/bench.sh

services:   ## only start the services
	bash scripts/services.sh

clean:
	rm -rf .venv target var .pytest_cache
