#!/bin/sh
# A worker of the `jobs` list: pops one job at a time (BLPOP, 5 s at most) and hands it
# to the program named by JOB_HANDLER. On SIGTERM (ECS stopping the task on scale-in)
# it finishes the job in hand and exits before taking another.
#   REDIS_HOST (default redis.internal), REDIS_PORT (6379), REDISCLI_AUTH (password),
#   QUEUE (jobs), JOB_HANDLER (required).
set -u
: "${REDIS_HOST:=redis.internal}" "${REDIS_PORT:=6379}" "${QUEUE:=jobs}"
: "${JOB_HANDLER:?set JOB_HANDLER to the program that runs one job}"
stop=0
trap 'stop=1' TERM INT
while [ "$stop" = 0 ]; do
    # --raw: the key and the job on two lines, or nothing after 5 s without a job.
    job=$(redis-cli --raw -h "$REDIS_HOST" -p "$REDIS_PORT" BLPOP "$QUEUE" 5 | sed -n 2p)
    [ -n "$job" ] && "$JOB_HANDLER" "$job"
done
