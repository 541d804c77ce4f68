#!/usr/bin/env bash
# Fetch and install a local single-node OpenSearch with the k-NN plugin (Lucene engine only).
#
# Usage: scripts/fetch_opensearch.sh [CACHE_DIR]
#   CACHE_DIR defaults to ${IMGSEARCH_CACHE:-$HOME/.cache/imgsearch}/opensearch
#
# Everything comes from Maven Central by coordinates (through `mvn`):
#   org.opensearch.distribution.integ-test-zip:opensearch:$V:zip   the minimal server (no bundled JDK)
#   org.opensearch.plugin:opensearch-knn:$V.0:zip                  k-NN (no native libs: engine "lucene" only)
#   org.opensearch.plugin:lang-painless:$V (+ antlr, asm, spi)     assembled here into modules/lang-painless
#   org.opensearch.plugin:analysis-common:$V                       assembled here into modules/analysis-common
# The downloaded files are kept in CACHE_DIR/artifacts-$V so that the install can be redone offline
# (then neither mvn nor a network is needed). The install goes to CACHE_DIR/opensearch-$V; a second run
# is a no-op. The last line on stdout is the install directory.
#
# Environment:
#   IMGSEARCH_OPENSEARCH_VERSION  server version (default 2.19.1: the newest 2.19 whose k-NN zip is served)
#   IMGSEARCH_OPENSEARCH_MODULES  "1" (default) assemble lang-painless + analysis-common modules;
#                                 "0" skip them and mark k-NN's lang-painless dependency optional instead
#   OPENSEARCH_JAVA_HOME / JAVA_HOME  a JDK 11..21 to run the plugin tool (else one is looked for)
set -euo pipefail

VERSION="${IMGSEARCH_OPENSEARCH_VERSION:-2.19.1}"
KNN_VERSION="${VERSION}.0"
WITH_MODULES="${IMGSEARCH_OPENSEARCH_MODULES:-1}"
CACHE_DIR="${1:-${IMGSEARCH_CACHE:-$HOME/.cache/imgsearch}/opensearch}"
ART="$CACHE_DIR/artifacts-$VERSION"
DEST="$CACHE_DIR/opensearch-$VERSION"
STAMP_TEXT="opensearch=$VERSION knn=$KNN_VERSION modules=$WITH_MODULES"

log() { echo "fetch_opensearch: $*" >&2; }
die() { echo "fetch_opensearch: ERROR: $*" >&2; exit 1; }

# Quick no-op when already installed with the same recipe.
if [[ -f "$DEST/.imgsearch-installed" ]] && [[ "$(cat "$DEST/.imgsearch-installed")" == "$STAMP_TEXT" ]]; then
  echo "$DEST"
  exit 0
fi

java_major() {  # major version of the JDK at $1, or empty
  local rel="$1/release" v=""
  [[ -x "$1/bin/java" ]] || return 0
  if [[ -f "$rel" ]]; then
    v="$(sed -n 's/^JAVA_VERSION="\([0-9][0-9]*\).*/\1/p' "$rel")"
  fi
  if [[ -z "$v" ]]; then
    v="$("$1/bin/java" -version 2>&1 | sed -n 's/.*version "\([0-9][0-9]*\).*/\1/p' | head -1)"
  fi
  echo "$v"
}

find_java_home() {  # a JDK 11..21 (OpenSearch 2.x must not run on Java 24+); 17 preferred
  local c m
  for c in "${OPENSEARCH_JAVA_HOME:-}" "${JAVA_HOME:-}"; do
    [[ -n "$c" ]] || continue
    m="$(java_major "$c")"
    if [[ -n "$m" ]] && (( m >= 11 && m <= 21 )); then echo "$c"; return 0; fi
  done
  for want in 17 21 11; do
    for c in /usr/lib/jvm/*; do
      [[ -d "$c" && ! -L "$c" ]] || continue
      [[ "$(java_major "$c")" == "$want" ]] && { echo "$c"; return 0; }
    done
  done
  if command -v java >/dev/null 2>&1; then
    c="$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")"
    m="$(java_major "$c")"
    if [[ -n "$m" ]] && (( m >= 11 && m <= 21 )); then echo "$c"; return 0; fi
  fi
  return 1
}

JAVA_HOME_FOUND="$(find_java_home)" || die "no Java 11..21 found (OpenSearch $VERSION needs one; Java 17 preferred and
Java 24+ does not work). Install one, e.g. 'apt-get install openjdk-17-jdk-headless', or set OPENSEARCH_JAVA_HOME."
log "using Java at $JAVA_HOME_FOUND"
command -v unzip >/dev/null 2>&1 || die "unzip is missing (apt-get install unzip)"

SERVER_ZIP="$ART/opensearch-$VERSION.zip"
KNN_ZIP="$ART/opensearch-knn-$KNN_VERSION.zip"

download() {
  command -v mvn >/dev/null 2>&1 || die "mvn (Apache Maven) is missing and the artifacts are not cached in $ART.
Install it ('apt-get install maven') or copy a filled $ART from another machine."
  local work
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' RETURN
  # A throwaway pom that lists the artifacts; copy-dependencies also brings lang-painless's own
  # dependencies (antlr4-runtime, asm*, painless spi) that its published pom names.
  local extra=""
  if [[ "$WITH_MODULES" == "1" ]]; then
    extra="
    <dependency><groupId>org.opensearch.plugin</groupId><artifactId>lang-painless</artifactId><version>$VERSION</version>
      <!-- the painless spi names the server as a dependency: the server's jars are in lib/ already -->
      <exclusions><exclusion><groupId>org.opensearch</groupId><artifactId>*</artifactId></exclusion></exclusions></dependency>
    <dependency><groupId>org.opensearch.plugin</groupId><artifactId>analysis-common</artifactId><version>$VERSION</version></dependency>"
  fi
  cat >"$work/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.imgsearch</groupId>
  <artifactId>fetch-opensearch</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.opensearch.distribution.integ-test-zip</groupId><artifactId>opensearch</artifactId><version>$VERSION</version><type>zip</type></dependency>
    <dependency><groupId>org.opensearch.plugin</groupId><artifactId>opensearch-knn</artifactId><version>$KNN_VERSION</version><type>zip</type></dependency>$extra
  </dependencies>
</project>
EOF
  log "downloading OpenSearch $VERSION, k-NN $KNN_VERSION$([[ $WITH_MODULES == 1 ]] && echo ', lang-painless, analysis-common') with mvn"
  mkdir -p "$work/out"
  if ! mvn -B -q -f "$work/pom.xml" \
      org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies \
      -DoutputDirectory="$work/out" >"$work/mvn.log" 2>&1; then
    tail -n 30 "$work/mvn.log" >&2
    die "mvn could not download the artifacts (see above). Is OpenSearch $VERSION / k-NN $KNN_VERSION served?"
  fi
  mkdir -p "$CACHE_DIR"
  rm -rf "$ART.tmp"
  mv "$work/out" "$ART.tmp"
  echo "$STAMP_TEXT" >"$ART.tmp/.complete"
  rm -rf "$ART"
  mv "$ART.tmp" "$ART"
}

if [[ ! -f "$ART/.complete" ]] || [[ "$(cat "$ART/.complete")" != "$STAMP_TEXT" ]]; then
  download
else
  log "using cached artifacts in $ART"
fi
[[ -f "$SERVER_ZIP" ]] || die "missing $SERVER_ZIP after download"
[[ -f "$KNN_ZIP" ]] || die "missing $KNN_ZIP after download"

# Build in a temporary folder beside the destination, then move it in place.
BUILD="$CACHE_DIR/.build-$VERSION.$$"
rm -rf "$BUILD"
mkdir -p "$BUILD"
trap 'rm -rf "$BUILD"' EXIT
unzip -q "$SERVER_ZIP" -d "$BUILD"
HOME_DIR="$BUILD/opensearch-$VERSION"
[[ -x "$HOME_DIR/bin/opensearch" ]] || die "unexpected layout in $SERVER_ZIP (no opensearch-$VERSION/bin/opensearch)"

descriptor() {  # name classname description extended  -> plugin-descriptor.properties on stdout
  cat <<EOF
description=$3
version=$VERSION
name=$1
classname=$2
java.version=11
opensearch.version=$VERSION
custom.foldername=
extended.plugins=$4
has.native.controller=false
EOF
}

plugin_class() {  # jar, candidate class names...: the first one the jar contains
  local jar="$1" c
  shift
  for c in "$@"; do
    if unzip -l "$jar" "${c//.//}.class" >/dev/null 2>&1; then echo "$c"; return 0; fi
  done
  return 1
}

KNN_INSTALL_ZIP="$KNN_ZIP"
if [[ "$WITH_MODULES" == "1" ]]; then
  # lang-painless: its jar plus every dependency jar except the analysis-common jar and the zips.
  m="$HOME_DIR/modules/lang-painless"
  mkdir -p "$m"
  for j in "$ART"/*.jar; do
    b="$(basename "$j")"
    case "$b" in analysis-common-*) continue ;; esac
    [[ -e "$HOME_DIR/lib/$b" ]] && continue  # on the server's class path already (jar hell otherwise)
    cp "$j" "$m/"
  done
  cls="$(plugin_class "$m/lang-painless-$VERSION.jar" org.opensearch.painless.PainlessModulePlugin org.opensearch.painless.PainlessPlugin)" \
    || die "no painless plugin class found in lang-painless-$VERSION.jar"
  descriptor lang-painless "$cls" "An easy, safe and fast scripting language for OpenSearch" "" >"$m/plugin-descriptor.properties"
  cat >"$m/plugin-security.policy" <<'EOF'
grant {
  // needed to generate runtime classes
  permission java.lang.RuntimePermission "createClassLoader";
  // needed to find the classloader to load whitelisted classes from
  permission java.lang.RuntimePermission "getClassLoader";
};
EOF
  # analysis-common: english analyzer, stemmer/synonym filters, ...; it extends lang-painless.
  m="$HOME_DIR/modules/analysis-common"
  mkdir -p "$m"
  cp "$ART/analysis-common-$VERSION.jar" "$m/"
  cls="$(plugin_class "$m/analysis-common-$VERSION.jar" org.opensearch.analysis.common.CommonAnalysisModulePlugin org.opensearch.analysis.common.CommonAnalysisPlugin)" \
    || die "no analysis plugin class found in analysis-common-$VERSION.jar"
  descriptor analysis-common "$cls" 'Adds "built in" analyzers to OpenSearch.' "lang-painless" >"$m/plugin-descriptor.properties"
else
  # No lang-painless: k-NN's descriptor must declare it optional (supported since OpenSearch 2.19.0).
  mkdir -p "$BUILD/knn"
  (cd "$BUILD/knn" && unzip -q "$KNN_ZIP")
  sed -i 's/^extended\.plugins=lang-painless$/extended.plugins=lang-painless;optional=true/' "$BUILD/knn/plugin-descriptor.properties"
  grep -q '^extended.plugins=lang-painless;optional=true$' "$BUILD/knn/plugin-descriptor.properties" \
    || die "k-NN descriptor does not look as expected: $(grep extended.plugins "$BUILD/knn/plugin-descriptor.properties")"
  KNN_INSTALL_ZIP="$BUILD/opensearch-knn-$KNN_VERSION-optional-painless.zip"
  if command -v zip >/dev/null 2>&1; then
    (cd "$BUILD/knn" && zip -q -r -X "$KNN_INSTALL_ZIP" .)
  elif [[ -x "$JAVA_HOME_FOUND/bin/jar" ]]; then
    "$JAVA_HOME_FOUND/bin/jar" --create --no-manifest --file "$KNN_INSTALL_ZIP" -C "$BUILD/knn" .
  else
    die "need 'zip' or a JDK 'jar' to repack the k-NN plugin"
  fi
fi

log "installing the k-NN plugin"
if ! OPENSEARCH_JAVA_HOME="$JAVA_HOME_FOUND" OPENSEARCH_PATH_CONF="$HOME_DIR/config" \
    "$HOME_DIR/bin/opensearch-plugin" install --batch "file://$KNN_INSTALL_ZIP" >"$BUILD/plugin.log" 2>&1; then
  cat "$BUILD/plugin.log" >&2
  die "opensearch-plugin install failed"
fi
[[ -f "$HOME_DIR/plugins/opensearch-knn/plugin-descriptor.properties" ]] || die "k-NN did not land in plugins/"

# Readable by the unprivileged user the node runs as; nothing in here is written at run time
# (the node's config, data and logs live in its own state folder).
chmod -R a+rX "$HOME_DIR"
echo "$STAMP_TEXT" >"$HOME_DIR/.imgsearch-installed"
rm -rf "$DEST"
mv "$HOME_DIR" "$DEST"
log "installed in $DEST"
echo "$DEST"
