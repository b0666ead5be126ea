#!/usr/bin/env bash
# Prints the nginx configuration the proxying benchmarks measure against: keep-alive to the
# client and to one upstream (a pool of 128, requests per connection unbounded), no access log,
# `X-Forwarded-For` set as the gateway sets it.
#
#   bench/nginx-conf.sh <directory for its pid and log> <port> <upstream host:port> [workers]
#
# workers: `auto` (one per core, the default) or a number.
set -euo pipefail
dir=$1 port=$2 upstream=$3 workers=${4:-auto}
cat <<CONF
worker_processes $workers;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  upstream fixed { server $upstream; keepalive 128; keepalive_requests 100000000; }
  server {
    listen 127.0.0.1:$port;
    location / {
      proxy_pass http://fixed;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    }
  }
}
CONF
