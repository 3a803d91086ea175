<?php
/**
 * Pressluft's object cache drop-in (wp-content/object-cache.php): WordPress's object cache in
 * the node's Redis, through phpredis. Rules: specs/object-cache.md.
 *
 * - One environment per prefix (WP_REDIS_PREFIX, `pressluft_<environment id>:`) and one Redis
 *   ACL user (WP_REDIS_USER, WP_REDIS_PASSWORD) that may touch only keys under that prefix.
 * - Keys: <prefix><generation>:<blog>:<group>:<group generation>:<key>. The generations live
 *   in the hash <prefix>gen (field `*` for the whole cache, `g:<group>` per group). A flush
 *   gives the environment a new random generation (never FLUSHDB: the Redis is shared, and the
 *   ACL refuses it); the old keys are no longer read and age out (allkeys-lru). Random, not a
 *   counter: should the hash itself be evicted, a new one never brings old keys back.
 * - Non-persistent groups stay in this request's memory. When Redis cannot be reached or
 *   refuses the credentials, the cache is this request's memory only (the site stays up) and
 *   the reason is logged once for the request. WP_REDIS_DISABLED true: memory only.
 */

defined('ABSPATH') || exit;

final class Pressluft_Object_Cache
{
    /** @var array<string, array<string, mixed>> this request's copy: [group][key] => value */
    private array $cache = [];
    /** @var array<string, true> */
    private array $global_groups = [];
    /** @var array<string, true> */
    private array $local_groups = [];
    /** @var array<string, string> the generation hash: '*' and 'g:<group>' => generation */
    private array $generations = [];
    private ?Redis $redis = null;
    private string $prefix;
    private int $blog_id = 1;
    private bool $logged = false;
    public int $cache_hits = 0;
    public int $cache_misses = 0;

    public function __construct()
    {
        $this->prefix = defined('WP_REDIS_PREFIX') ? (string) WP_REDIS_PREFIX : '';
        $this->blog_id = is_multisite() ? (int) get_current_blog_id() : 1;
        if ((defined('WP_REDIS_DISABLED') && WP_REDIS_DISABLED) || $this->prefix === '' || !class_exists('Redis')) {
            return;
        }
        try {
            $redis = new Redis();
            $host = defined('WP_REDIS_HOST') ? (string) WP_REDIS_HOST : '127.0.0.1';
            $port = defined('WP_REDIS_PORT') ? (int) WP_REDIS_PORT : 6379;
            if (!$redis->connect($host, $port, 1.0, null, 0, 1.0)) {
                throw new RedisException("cannot connect to {$host}:{$port}");
            }
            if (!$redis->auth([(string) WP_REDIS_USER, (string) WP_REDIS_PASSWORD])) {
                throw new RedisException('authentication refused');
            }
            $this->redis = $redis;
            $this->load_generations();
        } catch (Throwable $e) {
            $this->fail($e);
        }
    }

    /** Whether this request's cache is Redis (false: memory only). */
    public function is_connected(): bool
    {
        return $this->redis !== null;
    }

    private function fail(Throwable $e): void
    {
        $this->redis = null;
        if (!$this->logged) {
            $this->logged = true;
            error_log('pressluft object cache: Redis unavailable (' . $e->getMessage() . '); memory only for this request');
        }
    }

    private function load_generations(): void
    {
        $hash = $this->prefix . 'gen';
        $this->generations = $this->redis->hGetAll($hash) ?: [];
        if (!isset($this->generations['*'])) {
            $this->redis->hSetNx($hash, '*', bin2hex(random_bytes(6)));
            $this->generations = $this->redis->hGetAll($hash) ?: [];
        }
    }

    private function new_generation(string $field): void
    {
        $generation = bin2hex(random_bytes(6));
        $this->generations[$field] = $generation;
        if ($this->redis !== null) {
            try {
                $this->redis->hSet($this->prefix . 'gen', $field, $generation);
            } catch (Throwable $e) {
                $this->fail($e);
            }
        }
    }

    private static function group(mixed $group): string
    {
        return ($group === '' || $group === null) ? 'default' : (string) $group;
    }

    private function persistent(string $group): bool
    {
        return $this->redis !== null && !isset($this->local_groups[$group]);
    }

    /** The Redis key of a key in a group (':' and '%' escaped in the group: no two collide). */
    private function redis_key(string $key, string $group): string
    {
        $blog = isset($this->global_groups[$group]) ? 0 : $this->blog_id;
        return $this->prefix . ($this->generations['*'] ?? '0') . ':' . $blog . ':'
            . strtr($group, ['%' => '%25', ':' => '%3A']) . ':'
            . ($this->generations['g:' . $group] ?? '0') . ':' . $key;
    }

    private static function copy(mixed $value): mixed
    {
        return is_object($value) ? clone $value : $value;
    }

    /** Store a value; $mode: 'set', 'add' (only when absent) or 'replace' (only when present). */
    public function store(mixed $key, mixed $data, mixed $group, int $expire, string $mode): bool
    {
        $key = (string) $key;
        $group = self::group($group);
        if ($this->persistent($group)) {
            $options = $expire > 0 ? ['ex' => $expire] : [];
            if ($mode !== 'set') {
                $options[] = $mode === 'add' ? 'nx' : 'xx';
            }
            try {
                if (!$this->redis->set($this->redis_key($key, $group), serialize($data), $options ?: null)) {
                    return false;
                }
            } catch (Throwable $e) {
                $this->fail($e);
            }
        }
        if ($this->redis === null || !$this->persistent($group)) {
            $exists = array_key_exists($key, $this->cache[$group] ?? []);
            if (($mode === 'add' && $exists) || ($mode === 'replace' && !$exists)) {
                return false;
            }
        }
        $this->cache[$group][$key] = self::copy($data);
        return true;
    }

    public function get(mixed $key, mixed $group = '', bool $force = false, ?bool &$found = null): mixed
    {
        $key = (string) $key;
        $group = self::group($group);
        if (!$force || !$this->persistent($group)) {
            if (array_key_exists($key, $this->cache[$group] ?? [])) {
                $found = true;
                $this->cache_hits++;
                return self::copy($this->cache[$group][$key]);
            }
        }
        $found = false;
        if ($this->persistent($group)) {
            try {
                $raw = $this->redis->get($this->redis_key($key, $group));
                if (is_string($raw)) {
                    $found = true;
                    $this->cache_hits++;
                    $value = unserialize($raw);
                    $this->cache[$group][$key] = $value;
                    return self::copy($value);
                }
            } catch (Throwable $e) {
                $this->fail($e);
            }
        }
        $this->cache_misses++;
        return false;
    }

    /** @param array<int|string> $keys @return array<int|string, mixed> */
    public function get_multiple(array $keys, mixed $group = '', bool $force = false): array
    {
        $group = self::group($group);
        $values = [];
        $missing = [];
        foreach ($keys as $key) {
            if ((!$force || !$this->persistent($group)) && array_key_exists((string) $key, $this->cache[$group] ?? [])) {
                $values[$key] = self::copy($this->cache[$group][(string) $key]);
                $this->cache_hits++;
            } else {
                $missing[] = $key;
            }
        }
        $raws = [];
        if ($missing !== [] && $this->persistent($group)) {
            try {
                $raws = $this->redis->mGet(array_map(fn($key) => $this->redis_key((string) $key, $group), $missing));
            } catch (Throwable $e) {
                $this->fail($e);
            }
        }
        foreach ($missing as $i => $key) {
            if (is_string($raws[$i] ?? null)) {
                $this->cache[$group][(string) $key] = unserialize($raws[$i]);
                $values[$key] = self::copy($this->cache[$group][(string) $key]);
                $this->cache_hits++;
            } else {
                $values[$key] = false;
                $this->cache_misses++;
            }
        }
        return $values;
    }

    public function delete(mixed $key, mixed $group = ''): bool
    {
        $key = (string) $key;
        $group = self::group($group);
        $deleted = array_key_exists($key, $this->cache[$group] ?? []);
        unset($this->cache[$group][$key]);
        if ($this->persistent($group)) {
            try {
                $deleted = $this->redis->del($this->redis_key($key, $group)) > 0 || $deleted;
            } catch (Throwable $e) {
                $this->fail($e);
            }
        }
        return $deleted;
    }

    public function incr(mixed $key, int $offset, mixed $group): int|false
    {
        $value = $this->get($key, $group, false, $found);
        if (!$found) {
            return false;
        }
        $value = max(0, (is_numeric($value) ? (int) $value : 0) + $offset);
        $this->store($key, $value, $group, 0, 'set');
        return $value;
    }

    public function flush(): bool
    {
        $this->cache = [];
        $this->new_generation('*');
        return true;
    }

    public function flush_group(string $group): bool
    {
        $group = self::group($group);
        unset($this->cache[$group]);
        $this->new_generation('g:' . $group);
        return true;
    }

    public function flush_runtime(): bool
    {
        $this->cache = [];
        return true;
    }

    /** @param string|array<string> $groups */
    public function add_groups(string|array $groups, bool $global): void
    {
        foreach ((array) $groups as $group) {
            if ($global) {
                $this->global_groups[(string) $group] = true;
            } else {
                $this->local_groups[(string) $group] = true;
            }
        }
    }

    public function switch_to_blog(int $blog_id): void
    {
        $this->blog_id = is_multisite() ? $blog_id : 1;
    }

    public function close(): bool
    {
        if ($this->redis !== null) {
            try {
                $this->redis->close();
            } catch (Throwable) {
            }
            $this->redis = null;
        }
        return true;
    }
}

// The API WordPress (6.1+) calls. Many arguments arrive untyped (plugins): cast here.

function pressluft_object_cache(): Pressluft_Object_Cache { return $GLOBALS['wp_object_cache']; }
function wp_cache_init() { $GLOBALS['wp_object_cache'] = new Pressluft_Object_Cache(); }
function wp_cache_add($key, $data, $group = '', $expire = 0)
{
    return !wp_suspend_cache_addition() && pressluft_object_cache()->store($key, $data, $group, (int) $expire, 'add');
}
function wp_cache_replace($key, $data, $group = '', $expire = 0)
{
    return pressluft_object_cache()->store($key, $data, $group, (int) $expire, 'replace');
}
function wp_cache_set($key, $data, $group = '', $expire = 0)
{
    return pressluft_object_cache()->store($key, $data, $group, (int) $expire, 'set');
}
function wp_cache_add_multiple(array $data, $group = '', $expire = 0)
{
    return array_combine(array_keys($data), array_map(fn($k, $v) => wp_cache_add($k, $v, $group, $expire), array_keys($data), $data));
}
function wp_cache_set_multiple(array $data, $group = '', $expire = 0)
{
    return array_combine(array_keys($data), array_map(fn($k, $v) => wp_cache_set($k, $v, $group, $expire), array_keys($data), $data));
}
function wp_cache_get($key, $group = '', $force = false, &$found = null)
{
    return pressluft_object_cache()->get($key, $group, (bool) $force, $found);
}
function wp_cache_get_multiple($keys, $group = '', $force = false)
{
    return pressluft_object_cache()->get_multiple((array) $keys, $group, (bool) $force);
}
function wp_cache_delete($key, $group = '') { return pressluft_object_cache()->delete($key, $group); }
function wp_cache_delete_multiple(array $keys, $group = '')
{
    return array_combine($keys, array_map(fn($k) => wp_cache_delete($k, $group), $keys));
}
function wp_cache_incr($key, $offset = 1, $group = '') { return pressluft_object_cache()->incr($key, (int) $offset, $group); }
function wp_cache_decr($key, $offset = 1, $group = '') { return pressluft_object_cache()->incr($key, -(int) $offset, $group); }
function wp_cache_flush() { return pressluft_object_cache()->flush(); }
function wp_cache_flush_runtime() { return pressluft_object_cache()->flush_runtime(); }
function wp_cache_flush_group($group) { return pressluft_object_cache()->flush_group((string) $group); }
function wp_cache_supports($feature)
{
    return in_array($feature, ['add_multiple', 'set_multiple', 'get_multiple', 'delete_multiple', 'flush_runtime', 'flush_group'], true);
}
function wp_cache_add_global_groups($groups) { pressluft_object_cache()->add_groups($groups, true); }
function wp_cache_add_non_persistent_groups($groups) { pressluft_object_cache()->add_groups($groups, false); }
function wp_cache_switch_to_blog($blog_id) { pressluft_object_cache()->switch_to_blog((int) $blog_id); }
function wp_cache_close() { return pressluft_object_cache()->close(); }
