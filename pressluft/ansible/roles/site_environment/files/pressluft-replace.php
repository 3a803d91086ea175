<?php
/**
 * Pressluft: serialization-safe search and replace, with no WordPress dependency.
 *
 * This file owns the rules `pressluft-wp.php search-replace` applies to every
 * cell (see specs/wp-helper.md):
 *
 * - A cell that is exactly one serialized PHP value (checked by a structural
 *   scan of the whole cell, then unserialize() with allowed_classes => false,
 *   so no class code ever runs) is unserialized, replaced recursively and
 *   serialized again, so every string length is right. Array keys and the
 *   values of object properties are replaced; property names are not.
 *   An object of a class this process does not know stays an object of that
 *   class (its __PHP_Incomplete_Class is rebuilt under the original name).
 * - Anything else is a plain string: str_replace(), byte for byte.
 * - A cell that does not contain $from is returned untouched, byte-identical.
 * - A serialized cell that cannot be rewritten without losing data (custom
 *   C: serialization, enums, a PHP-rejected value, two keys that would
 *   collide after the replacement) raises PressluftReplaceUnsafe: the caller
 *   leaves it as it is and reports it. It is never string-replaced.
 */

declare(strict_types=1);

/** Nesting limit of arrays and objects (unserialize()'s own default). */
const PRESSLUFT_MAX_DEPTH = 4096;

/** A serialized cell that cannot be rewritten safely; the caller keeps it unchanged. */
final class PressluftReplaceUnsafe extends RuntimeException
{
}

/**
 * Replace $from with $to inside an already decoded value.
 *
 * Strings are treated like cells (a string holding serialized data, as
 * WordPress sometimes double-serializes, is rewritten structurally too).
 */
function pressluft_replace(mixed $value, string $from, string $to): mixed
{
    return pressluft_replace_value($value, $from, $to, new SplObjectStorage());
}

/** Replace $from with $to in one database cell (see the file's docblock). */
function pressluft_replace_cell(string $cell, string $from, string $to): string
{
    if ($from === '' || !str_contains($cell, $from)) {
        return $cell;
    }
    $shape = pressluft_serialized_shape($cell);
    if ($shape === 'plain') {
        return str_replace($from, $to, $cell);
    }
    if ($shape !== 'serialized') {
        throw new PressluftReplaceUnsafe("serialized data with {$shape}");
    }
    $value = @unserialize($cell, ['allowed_classes' => false, 'max_depth' => PRESSLUFT_MAX_DEPTH]);
    if ($value === false && $cell !== 'b:0;') {
        throw new PressluftReplaceUnsafe('serialized data PHP refuses to unserialize');
    }
    $replaced = pressluft_replace($value, $from, $to);
    $out = serialize($replaced);
    // Nothing but non-string parts matched (an integer, a property name):
    // keep the cell byte-identical rather than re-encoding it.
    return $out === serialize($value) ? $cell : $out;
}

/**
 * 'serialized' when the whole cell is one serialized value, 'plain' when it is
 * not serialized data at all, or a reason when it is serialized data that
 * cannot be rewritten without loss ('custom serialization (C:)', 'an enum (E:)').
 *
 * unserialize() alone is not strict enough: PHP 8.2 ignores anything after the
 * first value ('s:1:"a";tail' unserializes to "a"), and re-serializing would
 * drop the tail.
 */
function pressluft_serialized_shape(string $cell): string
{
    $flags = [];
    $end = pressluft_serialized_end($cell, 0, 0, $flags);
    if (isset($flags['deep'])) {
        return 'too deep a nesting';
    }
    if ($end !== strlen($cell)) {
        return 'plain';
    }
    if (isset($flags['C'])) {
        return 'custom serialization (C:)';
    }
    if (isset($flags['E'])) {
        return 'an enum (E:)';
    }
    return 'serialized';
}

/**
 * The offset just past the serialized value starting at $at, or null when the
 * bytes there are not a well-formed serialized value. Records the unsafe
 * kinds it meets (C:, E:, a nesting deeper than unserialize() allows) in $flags.
 *
 * @param array<string, true> $flags
 */
function pressluft_serialized_end(string $s, int $at, int $depth, array &$flags): ?int
{
    if ($depth > PRESSLUFT_MAX_DEPTH) {
        $flags['deep'] = true;
        return null;
    }
    if ($at >= strlen($s)) {
        return null;
    }
    $m = [];
    switch ($s[$at]) {
        case 'N':
            return substr($s, $at, 2) === 'N;' ? $at + 2 : null;
        case 'b':
            return preg_match('/\Gb:[01];/', $s, $m, 0, $at) === 1 ? $at + strlen($m[0]) : null;
        case 'i':
            return preg_match('/\Gi:[+-]?\d+;/', $s, $m, 0, $at) === 1 ? $at + strlen($m[0]) : null;
        case 'd':
            $float = '/\Gd:(?:[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|NAN|-?INF);/';
            return preg_match($float, $s, $m, 0, $at) === 1 ? $at + strlen($m[0]) : null;
        case 'r':
        case 'R':
            return preg_match('/\G[rR]:\d+;/', $s, $m, 0, $at) === 1 ? $at + strlen($m[0]) : null;
        case 's':
            if (preg_match('/\Gs:(\d+):"/', $s, $m, 0, $at) !== 1) {
                return null;
            }
            $close = $at + strlen($m[0]) + (int) $m[1];
            return substr($s, $close, 2) === '";' ? $close + 2 : null;
        case 'S':
            // Escaped string: \xx (two hex digits) stands for one byte.
            if (preg_match('/\GS:(\d+):"/', $s, $m, 0, $at) !== 1) {
                return null;
            }
            $pos = $at + strlen($m[0]);
            for ($left = (int) $m[1]; $left > 0; $left--) {
                if ($pos >= strlen($s)) {
                    return null;
                }
                if ($s[$pos] === '\\') {
                    if (preg_match('/\G\\\\[0-9a-fA-F]{2}/', $s, $m, 0, $pos) !== 1) {
                        return null;
                    }
                    $pos += 3;
                } else {
                    $pos++;
                }
            }
            return substr($s, $pos, 2) === '";' ? $pos + 2 : null;
        case 'a':
            if (preg_match('/\Ga:(\d+):\{/', $s, $m, 0, $at) !== 1) {
                return null;
            }
            return pressluft_serialized_members($s, $at + strlen($m[0]), (int) $m[1], $depth, $flags);
        case 'O':
            if (preg_match('/\GO:(\d+):"/', $s, $m, 0, $at) !== 1) {
                return null;
            }
            $pos = $at + strlen($m[0]) + (int) $m[1];
            if (preg_match('/\G":(\d+):\{/', $s, $m, 0, $pos) !== 1) {
                return null;
            }
            return pressluft_serialized_members($s, $pos + strlen($m[0]), (int) $m[1], $depth, $flags);
        case 'C':
            if (preg_match('/\GC:(\d+):"/', $s, $m, 0, $at) !== 1) {
                return null;
            }
            $pos = $at + strlen($m[0]) + (int) $m[1];
            if (preg_match('/\G":(\d+):\{/', $s, $m, 0, $pos) !== 1) {
                return null;
            }
            $close = $pos + strlen($m[0]) + (int) $m[1];
            if (substr($s, $close, 1) !== '}') {
                return null;
            }
            $flags['C'] = true;
            return $close + 1;
        case 'E':
            if (preg_match('/\GE:(\d+):"/', $s, $m, 0, $at) !== 1) {
                return null;
            }
            $close = $at + strlen($m[0]) + (int) $m[1];
            if (substr($s, $close, 2) !== '";') {
                return null;
            }
            $flags['E'] = true;
            return $close + 2;
        default:
            return null;
    }
}

/**
 * The offset past the closing brace of $count key/value pairs starting at $at.
 *
 * @param array<string, true> $flags
 */
function pressluft_serialized_members(string $s, int $at, int $count, int $depth, array &$flags): ?int
{
    $pos = $at;
    for ($i = 0; $i < $count; $i++) {
        $kind = $s[$pos] ?? '';
        if ($kind !== 'i' && $kind !== 's' && $kind !== 'S') {
            return null;
        }
        $pos = pressluft_serialized_end($s, $pos, $depth + 1, $flags);
        if ($pos === null) {
            return null;
        }
        $pos = pressluft_serialized_end($s, $pos, $depth + 1, $flags);
        if ($pos === null) {
            return null;
        }
    }
    return substr($s, $pos, 1) === '}' ? $pos + 1 : null;
}

/**
 * The recursive worker of pressluft_replace(). $seen maps each source object to
 * its rewritten copy (null while it is being rewritten), so an object
 * referenced twice stays one object.
 *
 * @param SplObjectStorage<object, ?object> $seen
 */
function pressluft_replace_value(mixed $value, string $from, string $to, SplObjectStorage $seen): mixed
{
    if (is_string($value)) {
        return pressluft_replace_cell($value, $from, $to);
    }
    if (is_array($value)) {
        $out = [];
        foreach ($value as $key => $item) {
            $newKey = is_string($key) ? str_replace($from, $to, $key) : $key;
            if (array_key_exists($newKey, $out)) {
                throw new PressluftReplaceUnsafe('two array keys would be the same after the replacement');
            }
            $out[$newKey] = pressluft_replace_value($item, $from, $to, $seen);
        }
        return $out;
    }
    if (!is_object($value)) {
        return $value; // null, bool, int, float
    }
    if ($seen->contains($value)) {
        $done = $seen[$value];
        if ($done === null) {
            throw new PressluftReplaceUnsafe('an object that contains itself');
        }
        return $done;
    }
    $seen[$value] = null; // in progress
    if ($value instanceof __PHP_Incomplete_Class) {
        $copy = pressluft_replace_incomplete($value, $from, $to, $seen);
    } else {
        // A loaded class (only when a caller decoded with classes allowed):
        // rewrite its public properties on a clone.
        $copy = clone $value;
        foreach (get_object_vars($copy) as $name => $item) {
            $copy->{$name} = pressluft_replace_value($item, $from, $to, $seen);
        }
    }
    $seen[$value] = $copy;
    return $copy;
}

/**
 * Rewrite an object of a class this process does not know. Its properties can
 * only be read as an array ((array) cast: private and protected names keep
 * their NUL-mangled form), and it can only be created by unserialize(): the
 * new object is built as the serialized text of an object of the original
 * class and unserialized again, still with allowed_classes => false.
 *
 * @param SplObjectStorage<object, ?object> $seen
 */
function pressluft_replace_incomplete(
    __PHP_Incomplete_Class $object,
    string $from,
    string $to,
    SplObjectStorage $seen
): object {
    $props = (array) $object;
    $class = $props['__PHP_Incomplete_Class_Name'] ?? null;
    if (!is_string($class)) {
        return $object;
    }
    unset($props['__PHP_Incomplete_Class_Name']);
    $out = [];
    foreach ($props as $name => $item) {
        $out[$name] = pressluft_replace_value($item, $from, $to, $seen);
    }
    // serialize($out) is 'a:N:{...}'; an object's body has the same members.
    $text = 'O:' . strlen($class) . ':"' . $class . '"' . substr(serialize($out), 1);
    $rebuilt = unserialize($text, ['allowed_classes' => false]);
    if (!is_object($rebuilt)) {
        throw new PressluftReplaceUnsafe("cannot rebuild an object of class {$class}");
    }
    return $rebuilt;
}
