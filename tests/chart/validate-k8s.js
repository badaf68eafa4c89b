#!/usr/bin/env node
// Validates Kubernetes objects against the schemas of the npm package
// kubernetes-models (and @kubernetes-models/prometheus-operator for
// monitoring.coreos.com).
//
// Usage: node validate-k8s.js NODE_MODULES_DIR < objects.json
//   stdin: a JSON array of objects (tests/chart converts helm's YAML stream).
// Prints one line per object, "ok <apiVersion> <kind> <name>" or
// "FAIL <apiVersion> <kind> <name>: <errors>", and exits 0 only when every
// object has a model and passes its validate().  An object with no known
// model is a failure, never skipped.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { pathToFileURL } = require('node:url');

// apiVersion group -> [package, folder inside it]
const PACKAGES = {
  'monitoring.coreos.com': ['@kubernetes-models/prometheus-operator'],
};

function modelFile(nodeModules, apiVersion, kind) {
  if (typeof apiVersion !== 'string' || typeof kind !== 'string' ||
      !/^[A-Za-z0-9]+$/.test(kind))
    return null;
  const slash = apiVersion.indexOf('/');
  const group = slash < 0 ? '' : apiVersion.slice(0, slash);
  const version = slash < 0 ? apiVersion : apiVersion.slice(slash + 1);
  if (!/^[a-z0-9.-]*$/.test(group) || !/^v[0-9a-z]+$/.test(version))
    return null;
  const pkg = (PACKAGES[group] || ['kubernetes-models'])[0];
  const rel = group === '' ? [version] : [group, version];
  return path.join(nodeModules, pkg, ...rel, `${kind}.js`);
}

function describe(err) {
  if (err && Array.isArray(err.errors))
    return err.errors
        .map((e) => `${e.instancePath || '/'} ${e.message}` +
            (e.params && Object.keys(e.params).length ?
                 ` ${JSON.stringify(e.params)}` : ''))
        .join('; ');
  return String(err && err.message ? err.message : err);
}

async function main() {
  const nodeModules = process.argv[2];
  if (!nodeModules || !fs.existsSync(path.join(nodeModules, 'kubernetes-models'))) {
    console.error(`validate-k8s: no kubernetes-models under ${nodeModules}` +
        ' (run scripts/install-tools.sh)');
    process.exit(2);
  }
  const objects = JSON.parse(fs.readFileSync(0, 'utf8'));
  if (!Array.isArray(objects) || objects.length === 0) {
    console.error('validate-k8s: expected a non-empty JSON array of objects');
    process.exit(2);
  }
  let failed = 0;
  for (const obj of objects) {
    const id = `${obj.apiVersion} ${obj.kind} ${obj.metadata && obj.metadata.name}`;
    const file = modelFile(nodeModules, obj.apiVersion, obj.kind);
    if (!file || !fs.existsSync(file)) {
      console.log(`FAIL ${id}: no model for this apiVersion/kind` +
          (file ? ` (${path.relative(nodeModules, file)} missing)` : ''));
      failed++;
      continue;
    }
    const mod = await import(pathToFileURL(file).href);
    const Model = mod[obj.kind];
    if (typeof Model !== 'function' || Model.apiVersion !== obj.apiVersion ||
        Model.kind !== obj.kind) {
      console.log(`FAIL ${id}: ${file} does not export model ${obj.kind}`);
      failed++;
      continue;
    }
    try {
      new Model(obj).validate();
      console.log(`ok ${id}`);
    } catch (err) {
      console.log(`FAIL ${id}: ${describe(err)}`);
      failed++;
    }
  }
  process.exit(failed ? 1 : 0);
}

main().catch((err) => {
  console.error(`validate-k8s: ${err && err.stack ? err.stack : err}`);
  process.exit(2);
});
