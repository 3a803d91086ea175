<?php
/**
 * Plugin Name: Pressluft login links
 * Description: Single-use, short-lived admin login links created by the Pressluft control plane.
 * Version: 1
 *
 * A must-use plugin. `pressluft-wp.php login-token` stores sha256(token) =>
 * {user_id, expires_at} in the option `pressluft_login_tokens` and hands the
 * token to the control plane; the link is <site>/?pressluft_login=<token>.
 * On such a request this plugin removes the entry first (under a row lock, so
 * a link works once even when opened twice at the same moment), then checks
 * the expiry and logs the user in. Anything else gets a plain 403 page and no
 * cookie. The token itself is never stored. See specs/wp-helper.md.
 */

declare(strict_types=1);

if (!defined('ABSPATH')) {
    exit;
}

const PRESSLUFT_LOGIN_OPTION = 'pressluft_login_tokens';

add_action('init', 'pressluft_login_handle', 0);

/** Log in with ?pressluft_login=<64 hex>, or refuse; returns only without that parameter. */
function pressluft_login_handle(): void
{
    if (!isset($_GET['pressluft_login'])) {
        return;
    }
    header('Cache-Control: no-store');
    header('Referrer-Policy: no-referrer');
    $token = $_GET['pressluft_login'];
    $entry = null;
    if (is_string($token) && preg_match('/^[0-9a-f]{64}$/D', $token) === 1) {
        $entry = pressluft_login_consume(hash('sha256', $token));
    }
    $user = null;
    if ($entry !== null && $entry['expires_at'] > time() && $entry['user_id'] > 0) {
        $user = get_userdata($entry['user_id']) ?: null;
    }
    if ($user === null) {
        pressluft_login_refuse();
    }
    wp_set_current_user($user->ID);
    wp_set_auth_cookie($user->ID, false);
    /** This action is documented in wp-includes/user.php (wp_signon). */
    do_action('wp_login', $user->user_login, $user);
    wp_safe_redirect(admin_url());
    exit;
}

/**
 * Remove the entry for $hash from the store and return it (null when there
 * is none). The removal is committed before the caller looks at the entry;
 * expired entries are pruned in the same write.
 *
 * @return array{user_id: int, expires_at: int}|null
 */
function pressluft_login_consume(string $hash): ?array
{
    global $wpdb;
    $suppress = $wpdb->suppress_errors(true);
    try {
        if ($wpdb->query('START TRANSACTION') === false) {
            return null;
        }
        $raw = $wpdb->get_var($wpdb->prepare(
            "SELECT option_value FROM {$wpdb->options} WHERE option_name = %s FOR UPDATE",
            PRESSLUFT_LOGIN_OPTION
        ));
        $tokens = is_string($raw) ? @unserialize($raw, ['allowed_classes' => false]) : null;
        if (!is_array($tokens) || !isset($tokens[$hash])) {
            $wpdb->query('ROLLBACK');
            return null;
        }
        $entry = $tokens[$hash];
        unset($tokens[$hash]);
        $now = time();
        $tokens = array_filter(
            $tokens,
            static fn (mixed $other): bool => is_array($other) && (int) ($other['expires_at'] ?? 0) > $now
        );
        $written = $wpdb->query($wpdb->prepare(
            "UPDATE {$wpdb->options} SET option_value = %s WHERE option_name = %s",
            serialize($tokens),
            PRESSLUFT_LOGIN_OPTION
        ));
        if ($written === false || $wpdb->query('COMMIT') === false) {
            $wpdb->query('ROLLBACK');
            return null;
        }
    } finally {
        $wpdb->suppress_errors($suppress);
    }
    wp_cache_delete(PRESSLUFT_LOGIN_OPTION, 'options');
    wp_cache_delete('alloptions', 'options');
    wp_cache_delete('notoptions', 'options');
    if (!is_array($entry)) {
        return null;
    }
    return ['user_id' => (int) ($entry['user_id'] ?? 0), 'expires_at' => (int) ($entry['expires_at'] ?? 0)];
}

/** The answer to an unknown, used, expired or malformed token: 403, no cookie. */
function pressluft_login_refuse(): never
{
    status_header(403);
    header('Content-Type: text/html; charset=utf-8');
    echo '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        '<meta name="robots" content="noindex"><title>Login link invalid</title></head>',
        '<body><p>This login link is invalid or has expired.</p></body></html>';
    exit;
}
