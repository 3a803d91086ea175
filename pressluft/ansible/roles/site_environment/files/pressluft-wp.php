<?php
/**
 * Pressluft's WordPress helper: WordPress-level operations without wp-cli.
 *
 *     php pressluft-wp.php <wordpress-root-dir>  < request.json
 *
 * Reads ONE JSON request object on stdin ({"command": "...", ...}; secrets
 * travel there, never on argv where `ps` shows them) and prints ONE JSON
 * object on stdout: {"ok": true, ...result} or
 * {"ok": false, "error": "<code>", "message": "..."}. Exit codes: 0 ok,
 * 1 a handled error, 2 bad usage. Error codes (stable): usage, bad_request,
 * not_installed, db_error, user_not_found, wp_error. The protocol, the
 * commands and their rules are in specs/wp-helper.md.
 *
 * WordPress is loaded core only (WP_INSTALLING: no plugins, no theme), so a
 * broken plugin cannot break the control plane and no plugin code sees the
 * requests; writes invalidate the object cache themselves.
 */

declare(strict_types=1);

if (PHP_SAPI !== 'cli') {
    // Never reachable over HTTP, even when the file lands in a web root.
    if (!headers_sent()) {
        http_response_code(404);
        header('Content-Type: application/json');
    }
    $refusal = ['ok' => false, 'error' => 'usage', 'message' => 'pressluft-wp.php runs only from the command line'];
    echo json_encode($refusal), "\n";
    exit(2);
}

ini_set('display_errors', 'stderr');
ini_set('log_errors', '0');
ini_set('zend.exception_ignore_args', '1'); // no argument values (passwords) in any trace

require __DIR__ . '/pressluft-replace.php';

const PRESSLUFT_TOKENS_OPTION = 'pressluft_login_tokens';

/** A handled failure: a stable code, a message for humans, an exit code. */
final class PressluftFailure extends Exception
{
    public function __construct(public readonly string $errorCode, string $message, public readonly int $exitCode = 1)
    {
        parent::__construct($message);
    }
}

/**
 * The commands: the request fields each one takes (name => [required, type];
 * types: 'text' a non-empty string, 'string' any string, 'int', 'json' any
 * JSON value) and how it needs WordPress: 'none' (its files only) or 'core'
 * (wp-load.php). Every field is checked before WordPress is loaded.
 */
const PRESSLUFT_COMMANDS = [
    'install' => [
        'fields' => [
            'url' => [true, 'text'],
            'title' => [true, 'text'],
            'admin_user' => [true, 'text'],
            'admin_email' => [true, 'text'],
            'admin_password' => [true, 'text'],
        ],
        'load' => 'core',
    ],
    'is-installed' => ['fields' => [], 'load' => 'core'],
    'core-version' => ['fields' => [], 'load' => 'none'],
    'db-check' => ['fields' => [], 'load' => 'core'],
    'option-get' => ['fields' => ['name' => [true, 'text']], 'load' => 'core'],
    'option-set' => ['fields' => ['name' => [true, 'text'], 'value' => [true, 'json']], 'load' => 'core'],
    'search-replace' => ['fields' => ['from' => [true, 'text'], 'to' => [true, 'string']], 'load' => 'core'],
    'login-token' => ['fields' => ['user_login' => [false, 'text'], 'ttl_seconds' => [false, 'int']], 'load' => 'core'],
    'user-password' => ['fields' => ['user_login' => [true, 'text'], 'password' => [true, 'text']], 'load' => 'core'],
    'object-cache-check' => ['fields' => [], 'load' => 'core'],
];

/** The administrator's public name (its nicename: author URLs, the REST API's user slug). */
const PRESSLUFT_ADMIN_PUBLIC_NAME = 'administrator';

$pressluft_responded = false;

/**
 * Print the one JSON answer (dropping anything WordPress printed) and exit.
 *
 * @param array<string, mixed> $payload
 */
function pressluft_respond(array $payload, int $exitCode): never
{
    global $pressluft_responded;
    $pressluft_responded = true;
    while (ob_get_level() > 0) {
        ob_end_clean();
    }
    $flags = JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_PRESERVE_ZERO_FRACTION;
    $json = json_encode($payload, $flags);
    if ($json === false && ($payload['ok'] ?? false) === false) {
        // An error message with bytes that are not UTF-8: keep the code.
        $json = json_encode($payload, $flags | JSON_INVALID_UTF8_SUBSTITUTE);
    }
    if ($json === false) {
        $exitCode = 1;
        $json = json_encode([
            'ok' => false,
            'error' => 'wp_error',
            'message' => 'the result cannot be written as JSON: ' . json_last_error_msg(),
        ]);
    }
    fwrite(STDOUT, $json . "\n");
    exit($exitCode);
}

function pressluft_fail(PressluftFailure $failure): never
{
    pressluft_respond(
        ['ok' => false, 'error' => $failure->errorCode, 'message' => $failure->getMessage()],
        $failure->exitCode
    );
}

/** Text of an HTML message (wp_die's), on one line, short. */
function pressluft_plain(string $html): string
{
    $text = html_entity_decode(strip_tags($html), ENT_QUOTES | ENT_HTML5, 'UTF-8');
    $text = trim((string) preg_replace('/\s+/', ' ', $text));
    if (strlen($text) <= 500) {
        return $text;
    }
    $cut = substr($text, 0, 500);
    for ($i = 0; $i < 3 && preg_match('//u', $cut) !== 1; $i++) {
        $cut = substr($cut, 0, -1); // not in the middle of a UTF-8 character
    }
    return $cut . '…';
}

/**
 * The answer when PHP ends without one: WordPress called exit()/die() while
 * loading, or a fatal error happened. Reports what it can, no stack trace.
 */
function pressluft_on_shutdown(): void
{
    global $pressluft_responded;
    if ($pressluft_responded) {
        return;
    }
    $error = error_get_last();
    if ($error !== null && in_array($error['type'], [E_ERROR, E_PARSE, E_CORE_ERROR, E_COMPILE_ERROR], true)) {
        $first = explode("\n", $error['message'], 2)[0];
        $message = 'PHP fatal error: ' . $first . ' (' . basename($error['file']) . ':' . $error['line'] . ')';
    } else {
        $printed = '';
        while (ob_get_level() > 0) {
            $printed = ob_get_clean() . $printed;
        }
        $message = 'WordPress exited early' . ($printed !== '' ? ': ' . pressluft_plain($printed) : '');
    }
    pressluft_respond(['ok' => false, 'error' => 'wp_error', 'message' => $message], 1);
}

/** wp_die() handler: turn WordPress's fatal messages into failures. */
function pressluft_wp_die_handler(mixed $message, mixed $title = '', mixed $args = []): void
{
    global $wpdb;
    if (is_object($message) && method_exists($message, 'get_error_message')) {
        $message = $message->get_error_message();
    }
    $text = pressluft_plain(is_scalar($message) ? (string) $message : '');
    if ($text === '' && is_scalar($title)) {
        $text = pressluft_plain((string) $title);
    }
    $dbDown = !isset($wpdb) || !is_object($wpdb) || empty($wpdb->ready) || !empty($wpdb->error);
    throw new PressluftFailure($dbDown ? 'db_error' : 'wp_error', $text !== '' ? $text : 'WordPress stopped');
}

function pressluft_wp_die_handler_name(): string
{
    return 'pressluft_wp_die_handler';
}

/**
 * Parse argv and stdin into [root, command, request]. Throws a usage
 * failure (exit 2) for the invocation, bad_request for the request.
 *
 * @param list<string> $argv
 * @return array{string, string, array<string, mixed>}
 */
function pressluft_parse(array $argv): array
{
    if (count($argv) !== 2 || $argv[1] === '') {
        throw new PressluftFailure('usage', 'usage: php pressluft-wp.php <wordpress-root-dir> < request.json', 2);
    }
    $root = rtrim($argv[1], '/');
    if ($root === '') {
        $root = '/';
    }
    if (!is_file($root . '/wp-load.php')) {
        throw new PressluftFailure('usage', 'not a WordPress root (no wp-load.php): ' . $argv[1], 2);
    }
    $raw = stream_get_contents(STDIN);
    if (!is_string($raw) || trim($raw) === '') {
        throw new PressluftFailure('bad_request', 'expected one JSON request object on stdin');
    }
    try {
        $shape = json_decode($raw, false, 64, JSON_THROW_ON_ERROR);
        $request = json_decode($raw, true, 64, JSON_THROW_ON_ERROR);
    } catch (JsonException $e) {
        throw new PressluftFailure('bad_request', 'the request is not valid JSON: ' . $e->getMessage());
    }
    if (!($shape instanceof stdClass) || !is_array($request)) {
        throw new PressluftFailure('bad_request', 'the request must be a JSON object');
    }
    $command = $request['command'] ?? null;
    if (!is_string($command) || !isset(PRESSLUFT_COMMANDS[$command])) {
        $known = implode(', ', array_keys(PRESSLUFT_COMMANDS));
        throw new PressluftFailure('bad_request', "unknown or missing \"command\" (one of: {$known})");
    }
    unset($request['command']);
    $fields = PRESSLUFT_COMMANDS[$command]['fields'];
    foreach (array_keys($request) as $name) {
        if (!array_key_exists($name, $fields)) {
            throw new PressluftFailure('bad_request', "{$command}: unknown field \"{$name}\"");
        }
    }
    foreach ($fields as $name => [$required, $type]) {
        if (!array_key_exists($name, $request)) {
            if ($required) {
                throw new PressluftFailure('bad_request', "{$command}: missing field \"{$name}\"");
            }
            continue;
        }
        $value = $request[$name];
        $valid = match ($type) {
            'text' => is_string($value) && $value !== '',
            'string' => is_string($value),
            'int' => is_int($value),
            'json' => true,
        };
        if (!$valid) {
            $what = [
                'text' => 'a non-empty string',
                'string' => 'a string',
                'int' => 'an integer',
                'json' => 'JSON',
            ][$type];
            throw new PressluftFailure('bad_request', "{$command}: \"{$name}\" must be {$what}");
        }
    }
    pressluft_check_request($command, $request);
    return [$root, $command, $request];
}

/**
 * The checks that need no WordPress, so a bad request never loads it.
 *
 * @param array<string, mixed> $request
 */
function pressluft_check_request(string $command, array $request): void
{
    if ($command === 'install') {
        pressluft_install_url($request);
        if (trim($request['admin_password']) !== $request['admin_password']) {
            // wp_install() would trim it silently: the password would not be the one asked for.
            throw new PressluftFailure('bad_request', '"admin_password" must not start or end with whitespace');
        }
    }
    if ($command === 'user-password' && trim($request['password']) !== $request['password']) {
        throw new PressluftFailure('bad_request', '"password" must not start or end with whitespace');
    }
    if (isset($request['name']) && strlen($request['name']) > 191) {
        throw new PressluftFailure('bad_request', '"name" is longer than 191 bytes');
    }
    $ttl = $request['ttl_seconds'] ?? 60;
    if ($ttl < 1 || $ttl > 3600) {
        throw new PressluftFailure('bad_request', '"ttl_seconds" must be from 1 to 3600');
    }
}

/** @param array<string, mixed> $request */
function pressluft_string(array $request, string $name, bool $allowEmpty = false): string
{
    $value = $request[$name] ?? null;
    if (!is_string($value) || (!$allowEmpty && $value === '')) {
        throw new PressluftFailure('bad_request', "\"{$name}\" must be a non-empty string");
    }
    return $value;
}

/**
 * Prepare the process so wp-load.php can run from the CLI (call before it).
 *
 * @param array<string, mixed> $request
 */
function pressluft_before_load(string $root, string $command, array $request): void
{
    $url = ($command === 'install') ? pressluft_install_url($request) : null;
    $parts = $url !== null ? parse_url($url) : [];
    $host = (string) ($parts['host'] ?? 'localhost') . (isset($parts['port']) ? ':' . $parts['port'] : '');
    $_SERVER['HTTP_HOST'] = $host;
    $_SERVER['SERVER_NAME'] = (string) ($parts['host'] ?? 'localhost');
    $_SERVER['REQUEST_URI'] = '/';
    $_SERVER['REQUEST_METHOD'] = 'GET';
    $_SERVER['SERVER_PROTOCOL'] = 'HTTP/1.1';
    if (($parts['scheme'] ?? '') === 'https') {
        $_SERVER['HTTPS'] = 'on';
    }
    // Core only: no plugins, no theme, and is_blog_installed() is asked
    // instead of a redirect to install.php.
    define('WP_INSTALLING', true);
    define('WP_DISABLE_FATAL_ERROR_HANDLER', true); // fatals are ours to report
    if ($url !== null) {
        define('WP_SITEURL', $url); // wp_install() uses it for siteurl/home/guids
    }
    // Hooks registered before WordPress exists: it adopts $wp_filter as is.
    $handler = ['function' => 'pressluft_wp_die_handler_name', 'accepted_args' => 1];
    foreach (['wp_die_handler', 'wp_die_ajax_handler', 'wp_die_json_handler', 'wp_die_jsonp_handler',
        'wp_die_xmlrpc_handler', 'wp_die_xml_handler'] as $hook) {
        $GLOBALS['wp_filter'][$hook][PHP_INT_MAX][] = $handler;
    }
    // Where wp-load.php looks: its own directory (symlinks resolved), else the
    // one above unless that is another WordPress.
    $abspath = (string) realpath($root);
    $above = dirname($abspath);
    if (!is_file($abspath . '/wp-config.php')
        && !(is_file($above . '/wp-config.php') && !is_file($above . '/wp-settings.php'))) {
        throw new PressluftFailure('wp_error', 'wp-config.php not found');
    }
}

/**
 * The install URL: http(s), a host, no query or fragment, no trailing slash.
 *
 * @param array<string, mixed> $request
 */
function pressluft_install_url(array $request): string
{
    $url = rtrim(pressluft_string($request, 'url'), '/');
    $parts = parse_url($url);
    if (!is_array($parts) || !in_array($parts['scheme'] ?? '', ['http', 'https'], true)
        || ($parts['host'] ?? '') === '' || isset($parts['query']) || isset($parts['fragment'])
        || isset($parts['user']) || isset($parts['pass'])) {
        throw new PressluftFailure('bad_request', '"url" must be an http(s) URL with a host and no query');
    }
    return $url;
}

/** Fail with not_installed unless WordPress is installed. */
function pressluft_require_installed(): void
{
    if (!is_blog_installed()) {
        throw new PressluftFailure('not_installed', 'WordPress is not installed');
    }
}

/**
 * Forget the cached copies of an option (WP_INSTALLING writes skip the object
 * cache, and a persistent one would keep serving the old value).
 */
function pressluft_forget_option(string $name): void
{
    wp_cache_delete($name, 'options');
    wp_cache_delete('alloptions', 'options');
    wp_cache_delete('notoptions', 'options');
}

/** @param array<string, mixed> $request */
function pressluft_install(array $request): array
{
    $url = pressluft_install_url($request);
    $title = pressluft_string($request, 'title');
    $user = pressluft_string($request, 'admin_user');
    $email = pressluft_string($request, 'admin_email');
    $password = pressluft_string($request, 'admin_password');
    if (is_blog_installed()) {
        return ['installed' => true, 'changed' => false];
    }
    if (sanitize_user($user, true) !== $user || strlen($user) > 60) {
        throw new PressluftFailure('bad_request', '"admin_user" is not a valid WordPress user name');
    }
    if (!is_email($email)) {
        throw new PressluftFailure('bad_request', '"admin_email" is not a valid email address');
    }
    if (!function_exists('wp_new_blog_notification')) {
        // The installer mails the admin (with the password passed in): not here.
        function wp_new_blog_notification(mixed ...$args): void
        {
        }
    }
    require_once ABSPATH . 'wp-admin/includes/upgrade.php';
    // WordPress hashes passwords slashed (as they arrive in $_POST), so does install.php.
    $result = wp_install($title, $user, $email, true, '', wp_slash($password));
    unset($password);
    if (!is_array($result) || !isset($result['user_id']) || is_wp_error($result['user_id'])) {
        $why = '';
        if (isset($result['user_id']) && is_wp_error($result['user_id'])) {
            $why = ': ' . pressluft_plain($result['user_id']->get_error_message());
        }
        throw new PressluftFailure('wp_error', 'the installer failed' . $why);
    }
    // The administrator authors the first post, so its public name (the REST API's
    // /wp/v2/users, author archives) would give its login away: a neutral one.
    $updated = wp_update_user([
        'ID' => (int) $result['user_id'],
        'user_nicename' => PRESSLUFT_ADMIN_PUBLIC_NAME,
        'display_name' => 'Administrator',
        'nickname' => 'Administrator',
    ]);
    if (is_wp_error($updated)) {
        throw new PressluftFailure('wp_error', 'naming the administrator failed: ' . pressluft_plain($updated->get_error_message()));
    }
    update_option('siteurl', $url);
    update_option('home', $url);
    wp_cache_flush();
    if (!is_blog_installed()) {
        throw new PressluftFailure('wp_error', 'the installer ran but WordPress is still not installed');
    }
    return ['installed' => true, 'changed' => true];
}

function pressluft_db_check(): array
{
    global $wpdb;
    $wpdb->suppress_errors(true);
    $one = $wpdb->get_var('SELECT 1');
    if ((string) $one !== '1') {
        $why = $wpdb->last_error !== '' ? ': ' . $wpdb->last_error : '';
        throw new PressluftFailure('db_error', 'SELECT 1 failed' . $why);
    }
    return ['db' => true];
}

/** @param array<string, mixed> $request */
function pressluft_option_get(array $request): array
{
    pressluft_require_installed();
    $missing = new stdClass();
    $value = get_option(pressluft_string($request, 'name'), $missing);
    return $value === $missing ? ['value' => null, 'exists' => false] : ['value' => $value, 'exists' => true];
}

/** @param array<string, mixed> $request */
function pressluft_option_set(array $request): array
{
    global $wpdb;
    pressluft_require_installed();
    $name = pressluft_string($request, 'name');
    $missing = new stdClass();
    $before = get_option($name, $missing);
    if ($before !== $missing && maybe_serialize($before) === maybe_serialize($request['value'])) {
        return ['changed' => false, 'value' => $before];
    }
    $wpdb->last_error = '';
    update_option($name, $request['value']);
    if ($wpdb->last_error !== '') {
        throw new PressluftFailure('db_error', 'could not write the option: ' . $wpdb->last_error);
    }
    pressluft_forget_option($name);
    $after = get_option($name, $missing);
    if ($after === $missing) {
        throw new PressluftFailure('wp_error', 'the option was not stored');
    }
    // WordPress sanitizes some options (siteurl, admin_email, ...): the
    // stored value is what counts.
    $changed = $before === $missing || maybe_serialize($before) !== maybe_serialize($after);
    return ['changed' => $changed, 'value' => $after];
}

/** Run $sql through $wpdb; a failure is a db_error naming $what. */
function pressluft_query(string $sql, string $what): void
{
    global $wpdb;
    if ($wpdb->query($sql) === false) {
        throw new PressluftFailure('db_error', "{$what} failed: " . $wpdb->last_error);
    }
}

/** @param array<string, mixed> $request */
function pressluft_search_replace(array $request): array
{
    global $wpdb;
    pressluft_require_installed();
    $from = pressluft_string($request, 'from');
    $to = pressluft_string($request, 'to', true);
    $wpdb->suppress_errors(true);
    $result = [
        'tables' => 0,
        'rows_changed' => 0,
        'cells_changed' => 0,
        'cells_skipped' => 0,
        'skipped_tables' => [],
        'skipped_cells' => [],
    ];
    if ($from === $to) {
        return $result;
    }
    $tables = $wpdb->get_results(
        $wpdb->prepare('SHOW FULL TABLES LIKE %s', $wpdb->esc_like($wpdb->prefix) . '%'),
        ARRAY_N
    );
    if (!is_array($tables)) {
        throw new PressluftFailure('db_error', 'cannot list the tables: ' . $wpdb->last_error);
    }
    pressluft_query('START TRANSACTION', 'starting the transaction');
    try {
        foreach ($tables as [$table, $type]) {
            if ($type !== 'BASE TABLE') {
                continue;
            }
            pressluft_replace_table((string) $table, $from, $to, $result);
        }
        pressluft_query('COMMIT', 'committing');
    } catch (Throwable $e) {
        $wpdb->query('ROLLBACK');
        throw $e;
    }
    if ($result['rows_changed'] > 0) {
        wp_cache_flush();
    }
    return $result;
}

/**
 * Replace in every text column of one table, row by row by primary key
 * (keyset pages of 500 rows, so rows that still match after a change are not
 * visited twice). Primary-key columns themselves are not rewritten; a table
 * without a primary key is skipped and named in the result.
 *
 * @param array<string, mixed> $result
 */
function pressluft_replace_table(string $table, string $from, string $to, array &$result): void
{
    global $wpdb;
    $quoted = '`' . str_replace('`', '``', $table) . '`';
    $columns = $wpdb->get_results("SHOW COLUMNS FROM {$quoted}", ARRAY_A);
    if (!is_array($columns)) {
        throw new PressluftFailure('db_error', "cannot read the columns of {$table}: " . $wpdb->last_error);
    }
    $keys = [];
    $texts = [];
    foreach ($columns as $column) {
        if (($column['Key'] ?? '') === 'PRI') {
            $keys[] = (string) $column['Field'];
        } elseif (preg_match('/^(?:var)?char\b|^(?:tiny|medium|long)?text\b/i', (string) $column['Type']) === 1) {
            $texts[] = (string) $column['Field'];
        }
    }
    if ($keys === []) {
        $result['skipped_tables'][] = $table;
        return;
    }
    $result['tables']++;
    if ($texts === []) {
        return;
    }
    $q = static fn (string $column): string => '`' . str_replace('`', '``', $column) . '`';
    $like = '%' . $wpdb->esc_like($from) . '%';
    $match = '(' . implode(' OR ', array_map(static fn (string $c): string => $q($c) . ' LIKE %s', $texts)) . ')';
    $keyList = implode(', ', array_map($q, $keys));
    $select = 'SELECT ' . $keyList . ', ' . implode(', ', array_map($q, $texts)) . " FROM {$quoted} WHERE {$match}";
    $after = null;
    do {
        $args = array_fill(0, count($texts), $like);
        $sql = $select;
        if ($after !== null) {
            $sql .= ' AND (' . $keyList . ') > (' . implode(', ', array_fill(0, count($keys), '%s')) . ')';
            array_push($args, ...$after);
        }
        $sql .= " ORDER BY {$keyList} LIMIT 500";
        $rows = $wpdb->get_results($wpdb->prepare($sql, ...$args), ARRAY_A);
        if (!is_array($rows)) {
            throw new PressluftFailure('db_error', "cannot read {$table}: " . $wpdb->last_error);
        }
        foreach ($rows as $row) {
            $where = [];
            foreach ($keys as $key) {
                $where[$key] = $row[$key];
            }
            $changes = [];
            foreach ($texts as $column) {
                $cell = $row[$column];
                if (!is_string($cell)) {
                    continue;
                }
                try {
                    $new = pressluft_replace_cell($cell, $from, $to);
                } catch (PressluftReplaceUnsafe $e) {
                    $result['cells_skipped']++;
                    if (count($result['skipped_cells']) < 100) {
                        $result['skipped_cells'][] = [
                            'table' => $table,
                            'column' => $column,
                            'key' => $where,
                            'reason' => $e->getMessage(),
                        ];
                    }
                    continue;
                }
                if ($new !== $cell) {
                    $changes[$column] = $new;
                }
            }
            if ($changes !== []) {
                if ($wpdb->update($table, $changes, $where) === false) {
                    $why = $wpdb->last_error !== ''
                        ? $wpdb->last_error
                        : 'refused (a value too long for its column or not valid in its character set)';
                    throw new PressluftFailure('db_error', "cannot update a row of {$table}: {$why}");
                }
                $result['rows_changed']++;
                $result['cells_changed'] += count($changes);
            }
            $after = array_values($where);
        }
    } while (count($rows) === 500);
}

/**
 * Change the login-token store under a row lock (SELECT ... FOR UPDATE), the
 * same way pressluft-login.php consumes a token, so a token used while another
 * is created is never written back. Expired entries are pruned on every write.
 *
 * @param callable(array<string, mixed>): array<string, mixed> $change sha256 => {user_id, expires_at}
 */
function pressluft_tokens_update(callable $change): void
{
    global $wpdb;
    $wpdb->suppress_errors(true);
    $insert = $wpdb->prepare(
        "INSERT IGNORE INTO {$wpdb->options} (option_name, option_value, autoload) VALUES (%s, %s, 'no')",
        PRESSLUFT_TOKENS_OPTION,
        serialize([])
    );
    pressluft_query($insert, 'creating the token store');
    pressluft_query('START TRANSACTION', 'starting the transaction');
    try {
        $raw = $wpdb->get_var($wpdb->prepare(
            "SELECT option_value FROM {$wpdb->options} WHERE option_name = %s FOR UPDATE",
            PRESSLUFT_TOKENS_OPTION
        ));
        if (!is_string($raw)) {
            throw new PressluftFailure('db_error', 'cannot read the token store: ' . $wpdb->last_error);
        }
        $tokens = @unserialize($raw, ['allowed_classes' => false]);
        $tokens = is_array($tokens) ? $tokens : [];
        $now = time();
        $tokens = array_filter(
            $change($tokens),
            static fn (mixed $entry): bool => is_array($entry) && (int) ($entry['expires_at'] ?? 0) > $now
        );
        $update = $wpdb->prepare(
            "UPDATE {$wpdb->options} SET option_value = %s WHERE option_name = %s",
            serialize($tokens),
            PRESSLUFT_TOKENS_OPTION
        );
        pressluft_query($update, 'writing the token store');
        pressluft_query('COMMIT', 'committing');
    } catch (Throwable $e) {
        $wpdb->query('ROLLBACK');
        throw $e;
    }
    pressluft_forget_option(PRESSLUFT_TOKENS_OPTION);
}

/** Whether $user is one of the site's administrators (by role). */
function pressluft_is_administrator(mixed $user): bool
{
    return is_object($user) && in_array('administrator', (array) ($user->roles ?? []), true);
}

/**
 * Why the named user cannot act as the site's administrator (null: it can).
 * The site's owner may delete or demote Pressluft's administrator.
 */
function pressluft_not_administrator(string $login, mixed $user): ?string
{
    if (!$user) {
        return "no user with the login \"{$login}\"";
    }
    return pressluft_is_administrator($user) ? null : "the user \"{$login}\" is not an administrator";
}

/** @param array<string, mixed> $request */
function pressluft_login_token(array $request): array
{
    pressluft_require_installed();
    $ttl = (int) ($request['ttl_seconds'] ?? 60);
    // The named administrator; when it was deleted or demoted, the first administrator
    // (the answer says whose login it is, and `fallback` names the reason).
    $user = null;
    $fallback = null;
    if (array_key_exists('user_login', $request)) {
        $login = pressluft_string($request, 'user_login');
        $user = get_user_by('login', $login);
        $fallback = pressluft_not_administrator($login, $user);
    }
    if ($user === null || $fallback !== null) {
        $admins = get_users(['role' => 'administrator', 'orderby' => 'ID', 'order' => 'ASC', 'number' => 1]);
        $user = $admins[0] ?? null;
        if (!$user) {
            throw new PressluftFailure('user_not_found', 'the site has no administrator' . ($fallback !== null ? " ({$fallback})" : ''));
        }
    }
    $token = bin2hex(random_bytes(32));
    $expiresAt = time() + $ttl;
    $entry = ['user_id' => (int) $user->ID, 'expires_at' => $expiresAt];
    pressluft_tokens_update(static function (array $tokens) use ($token, $entry): array {
        $tokens[hash('sha256', $token)] = $entry;
        return $tokens;
    });
    $answer = ['token' => $token, 'expires_at' => $expiresAt, 'user_login' => $user->user_login];
    return $fallback !== null ? $answer + ['fallback' => $fallback] : $answer;
}

/**
 * Set an administrator's password (a clone's administrator gets its own; the
 * copied database holds its source's). Never echoed. A user that is gone or no
 * longer an administrator (the site's owner deleted or demoted it) is skipped,
 * not failed: `{changed: false, skipped: <why>}` — no other account's password
 * is changed (it may be a person's), and magic login uses the first administrator.
 *
 * @param array<string, mixed> $request
 */
function pressluft_user_password(array $request): array
{
    pressluft_require_installed();
    $login = pressluft_string($request, 'user_login');
    $user = get_user_by('login', $login);
    $skipped = pressluft_not_administrator($login, $user);
    if ($skipped !== null) {
        return ['user_login' => $login, 'changed' => false, 'skipped' => $skipped];
    }
    // Raw, not slashed: wp_set_password() hashes what it gets (unlike the installer).
    wp_set_password(pressluft_string($request, 'password'), (int) $user->ID);
    clean_user_cache((int) $user->ID);
    return ['user_login' => $user->user_login, 'changed' => true];
}

/** The version of the WordPress files, read without loading WordPress. */
function pressluft_core_version(string $root): array
{
    $file = $root . '/wp-includes/version.php';
    if (!is_file($file)) {
        throw new PressluftFailure('wp_error', 'wp-includes/version.php not found');
    }
    $version = (static function (string $file): mixed {
        $wp_version = null;
        include $file;
        return $wp_version;
    })($file);
    if (!is_string($version)) {
        throw new PressluftFailure('wp_error', 'wp-includes/version.php does not set $wp_version');
    }
    return ['version' => $version];
}

/**
 * Whether WordPress's object cache is the drop-in (wp-content/object-cache.php) and whether
 * a value set through wp_cache_set came back from Redis once the request's own copy was
 * dropped (persistent). The key is deleted again.
 */
function pressluft_object_cache_check(): array
{
    $dropin = (bool) wp_using_ext_object_cache(); // null when no drop-in was ever loaded
    $cache = $GLOBALS['wp_object_cache'] ?? null;
    $persistent = false;
    if ($dropin && is_object($cache) && method_exists($cache, 'is_connected') && $cache->is_connected()) {
        $value = bin2hex(random_bytes(8));
        wp_cache_set('object-cache-check', $value, 'pressluft', 60);
        wp_cache_flush_runtime();
        $persistent = wp_cache_get('object-cache-check', 'pressluft', true) === $value && $cache->is_connected();
        wp_cache_delete('object-cache-check', 'pressluft');
    }
    return ['dropin' => $dropin, 'persistent' => $persistent];
}

/** @param array<string, mixed> $request */
function pressluft_dispatch(string $root, string $command, array $request): array
{
    return match ($command) {
        'install' => pressluft_install($request),
        'is-installed' => ['installed' => is_blog_installed()],
        'core-version' => pressluft_core_version($root),
        'db-check' => pressluft_db_check(),
        'option-get' => pressluft_option_get($request),
        'option-set' => pressluft_option_set($request),
        'search-replace' => pressluft_search_replace($request),
        'login-token' => pressluft_login_token($request),
        'user-password' => pressluft_user_password($request),
        'object-cache-check' => pressluft_object_cache_check(),
    };
}

// --- main: top level on purpose, WordPress expects wp-load.php in the global scope.

ob_start();
register_shutdown_function('pressluft_on_shutdown');
try {
    [$pressluft_root, $pressluft_command, $pressluft_request] = pressluft_parse($argv ?? []);
    if (PRESSLUFT_COMMANDS[$pressluft_command]['load'] === 'core') {
        pressluft_before_load($pressluft_root, $pressluft_command, $pressluft_request);
        require $pressluft_root . '/wp-load.php';
    }
    pressluft_respond(['ok' => true] + pressluft_dispatch($pressluft_root, $pressluft_command, $pressluft_request), 0);
} catch (PressluftFailure $pressluft_failure) {
    pressluft_fail($pressluft_failure);
} catch (Throwable $pressluft_error) {
    // Never a stack trace: the class and the message.
    $pressluft_message = pressluft_plain(get_class($pressluft_error) . ': ' . $pressluft_error->getMessage());
    pressluft_respond(['ok' => false, 'error' => 'wp_error', 'message' => $pressluft_message], 1);
}
