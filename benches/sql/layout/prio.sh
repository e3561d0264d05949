#!/usr/bin/env bash
# Runs a command in its own scheduler autogroup with a higher weight (nice -10), so a
# concurrent compile in another autogroup does not take half the cores mid-measurement.
# Affects only the command started here.
exec setsid bash -c 'echo -10 > /proc/self/autogroup 2>/dev/null; exec "$@"' _ "$@"
