#!/usr/bin/env node
// JSON Schemas of the Grafana dashboard model, generated from the TypeScript
// types of the npm package @grafana/schema with ts-json-schema-generator (a
// string enum becomes a JSON "enum", an interface "additionalProperties":
// false, so a misspelt key or value is an error).
//
// Usage: node grafana-schema.js NODE_MODULES_DIR PANEL_TYPE...
// Prints one JSON object: {"version": <@grafana/schema version>,
// "dashboard": <schema of the dashboard JSON model>, "panels": {<type>:
// {"options": <schema>, "fieldConfig": <schema or null>}}}.  A panel type
// the package does not describe is an error.
'use strict';

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

function main() {
  const [nodeModules, ...panelTypes] = process.argv.slice(2);
  const pkgDir = nodeModules && path.join(nodeModules, '@grafana', 'schema');
  if (!pkgDir || !fs.existsSync(path.join(pkgDir, 'package.json'))) {
    console.error(`grafana-schema: no @grafana/schema under ${nodeModules} (run scripts/install-tools.sh)`);
    process.exit(2);
  }
  const tsj = require(path.join(nodeModules, 'ts-json-schema-generator'));
  const pkg = JSON.parse(fs.readFileSync(path.join(pkgDir, 'package.json'), 'utf8'));
  const types = path.join(pkgDir, 'dist', 'types', 'raw');

  // One entry file naming every type wanted; the generator resolves the
  // package's own imports.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rp-grafana-schema-'));
  const lines = [`import type * as dash from ${JSON.stringify(path.join(types, 'dashboard', 'x', 'types.gen'))};`,
                 'export type RPDashboard = dash.Dashboard;'];
  const panels = {};
  for (const t of panelTypes) {
    if (!/^[a-z0-9]+$/.test(t)) throw new Error(`bad panel type ${t}`);
    const file = path.join(types, 'composable', t, 'panelcfg', 'x', 'types.gen.d.ts');
    if (!fs.existsSync(file)) {
      console.error(`grafana-schema: @grafana/schema ${pkg.version} has no panel type ${t}`);
      process.exit(1);
    }
    const src = fs.readFileSync(file, 'utf8');
    lines.push(`import type * as p_${t} from ${JSON.stringify(file.replace(/\.d\.ts$/, ''))};`);
    lines.push(`export type RPOptions_${t} = p_${t}.Options;`);
    panels[t] = { fieldConfig: /export interface FieldConfig\b/.test(src) };
    if (panels[t].fieldConfig) lines.push(`export type RPFieldConfig_${t} = p_${t}.FieldConfig;`);
  }
  const entry = path.join(dir, 'entry.ts');
  fs.writeFileSync(entry, lines.join('\n') + '\n');
  const tsconfig = path.join(dir, 'tsconfig.json');
  fs.writeFileSync(tsconfig, JSON.stringify({
    compilerOptions: { strict: true, module: 'commonjs', moduleResolution: 'node', skipLibCheck: true,
                       noEmit: true, typeRoots: [] },
    files: [entry] }));
  const gen = tsj.createGenerator({ path: entry, tsconfig, skipTypeCheck: true, expose: 'export',
                                    jsDoc: 'none', topRef: true });
  const out = { version: pkg.version, dashboard: gen.createSchema('RPDashboard'), panels: {} };
  for (const t of Object.keys(panels)) {
    out.panels[t] = {
      options: gen.createSchema(`RPOptions_${t}`),
      fieldConfig: panels[t].fieldConfig ? gen.createSchema(`RPFieldConfig_${t}`) : null,
    };
  }
  fs.rmSync(dir, { recursive: true, force: true });
  process.stdout.write(JSON.stringify(out));
}

try {
  main();
} catch (err) {
  console.error(`grafana-schema: ${err && err.stack ? err.stack : err}`);
  process.exit(2);
}
