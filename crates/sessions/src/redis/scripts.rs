//! The Lua scripts the Redis store runs; each touches the keys of one hash slot only, so they
//! run on a Redis Cluster as on one server.

use redis::Script;

/// Adds a session to the user's index, forgets the ended ones, and names the oldest over the
/// cap (the caller deletes their records, then settles the index).
pub(super) fn index_add() -> Script {
    Script::new(
        r"
                redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
                redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
                local over = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[4])
                local keep = tonumber(ARGV[2])
                local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
                if last[2] and tonumber(last[2]) > keep then keep = tonumber(last[2]) end
                redis.call('PEXPIREAT', KEYS[1], string.format('%d', keep))
                if over > 0 then return redis.call('ZRANGE', KEYS[1], 0, over - 1) end
                return {}
                ",
    )
}

/// Takes ended sessions out of the index; says whether the new one (ARGV[1]) is still in it.
pub(super) fn index_settle() -> Script {
    Script::new(
        r"
                for i = 2, #ARGV do redis.call('ZREM', KEYS[1], ARGV[i]) end
                if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 1 end
                return 0
                ",
    )
}

/// Takes one attempt back off a counter, never below zero.
pub(super) fn unhit() -> Script {
    Script::new(
        r"
                if redis.call('EXISTS', KEYS[1]) == 1 and tonumber(redis.call('GET', KEYS[1])) > 0 then
                    redis.call('DECR', KEYS[1])
                end
                return 0
                ",
    )
}

/// Takes a one-time value and keeps it under a second key for a while (both keys in one slot).
pub(super) fn take_and_keep() -> Script {
    Script::new(
        r"
                local value = redis.call('GETDEL', KEYS[1])
                if value then redis.call('SET', KEYS[2], value, 'PX', ARGV[1]) end
                return value
                ",
    )
}

/// Counts one attempt; the first of a window starts the window's expiry.
pub(super) fn hit() -> Script {
    Script::new(
        r"
                local count = redis.call('INCR', KEYS[1])
                if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
                return count
                ",
    )
}
