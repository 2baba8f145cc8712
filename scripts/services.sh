#!/usr/bin/env bash
# Install (if missing) and start on loopback the services the tests use:
# MariaDB, Redis, RabbitMQ (plus nginx and ffmpeg, which tests run directly).
# Idempotent: a service that already answers is reused. No systemd, no Docker.
set -euo pipefail

LOG_DIR=${VEDINA_SERVICE_LOGS:-/tmp/vedina-services}
DB_PASSWORD=${VEDINA_TEST_DB_PASSWORD:-vedina-test-password}
mkdir -p "$LOG_DIR"

say() { printf '[services] %s\n' "$*"; }

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local seconds=$1 what=$2; shift 2
  for _ in $(seq 1 $((seconds * 4))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.25
  done
  say "$what did not come up in ${seconds}s; see $LOG_DIR"; return 1
}

missing=()
command -v mysqld_safe >/dev/null || missing+=(mariadb-server)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v rabbitmq-server >/dev/null || missing+=(rabbitmq-server)
command -v nginx >/dev/null || missing+=(nginx)
command -v ffmpeg >/dev/null || missing+=(ffmpeg)
command -v wrk >/dev/null || missing+=(wrk)
command -v promtool >/dev/null || missing+=(prometheus)  # promtool (its server is not started)
command -v ip >/dev/null || missing+=(iproute2)    # tests/cluster: test hosts in network namespaces
command -v curl >/dev/null || missing+=(curl)       # tests/cluster: requests from inside a namespace
if ((${#missing[@]})); then
  say "installing ${missing[*]}"
  apt-get update -qq
  # The packages try to start their daemons and are refused (no init here): expected.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >"$LOG_DIR/apt.log" 2>&1 \
    || { tail -20 "$LOG_DIR/apt.log"; exit 1; }
fi

# -- MariaDB ------------------------------------------------------------------
if ! mariadb -uroot -e 'select 1' >/dev/null 2>&1; then
  say "starting MariaDB"
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
  # Binary log (ROW format) for point-in-time recovery from `vedina backup` (see README, Backups).
  setsid nohup mysqld_safe --bind-address=127.0.0.1 --log-bin=vedina-bin --binlog-format=ROW --server-id=1 \
    --binlog-expire-logs-seconds=1209600 >"$LOG_DIR/mariadb.log" 2>&1 < /dev/null &
  wait_for 60 MariaDB mariadb -uroot -e 'select 1'
fi
if [[ $(mariadb -uroot -N -e "SELECT @@log_bin") != 1 ]]; then
  say "MariaDB runs without a binary log (no point-in-time restore): restart it with 'mariadb-admin -uroot shutdown' and rerun this script"
fi
for db in vedina_test vedina_live vedina_bench; do
  mariadb -uroot -e "CREATE DATABASE IF NOT EXISTS $db CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
done
for host in 127.0.0.1 localhost; do
  mariadb -uroot -e "CREATE USER IF NOT EXISTS 'vedina'@'$host' IDENTIFIED BY '$DB_PASSWORD';
    ALTER USER 'vedina'@'$host' IDENTIFIED BY '$DB_PASSWORD';
    GRANT ALL PRIVILEGES ON vedina_test.* TO 'vedina'@'$host';
    GRANT ALL PRIVILEGES ON vedina_live.* TO 'vedina'@'$host';
    GRANT ALL PRIVILEGES ON vedina_bench.* TO 'vedina'@'$host';
    -- vedina backup/restore: read binlogs remotely and replay them (PITR) into scratch databases.
    GRANT REPLICATION SLAVE, BINLOG REPLAY ON *.* TO 'vedina'@'$host';
    GRANT ALL PRIVILEGES ON \`vedina%\\_restore%\`.* TO 'vedina'@'$host';
    -- tests that need a database of their own (migrations down and up again).
    GRANT ALL PRIVILEGES ON \`vedina\\_scratch%\`.* TO 'vedina'@'$host';"
done

# -- Redis --------------------------------------------------------------------
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  say "starting Redis"
  redis-server --bind 127.0.0.1 --port 6379 --save '' --appendonly no --daemonize yes \
    --logfile "$LOG_DIR/redis.log"
  wait_for 20 Redis redis-cli -h 127.0.0.1 -p 6379 ping
fi

# -- RabbitMQ -----------------------------------------------------------------
if ! rabbitmq-diagnostics -q check_port_connectivity >/dev/null 2>&1; then
  say "starting RabbitMQ"
  RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 setsid nohup rabbitmq-server >"$LOG_DIR/rabbitmq.log" 2>&1 < /dev/null &
  wait_for 90 RabbitMQ rabbitmq-diagnostics -q check_port_connectivity
fi

say "MariaDB, Redis and RabbitMQ are up on 127.0.0.1"
