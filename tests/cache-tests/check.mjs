// Compares a cache-tests results file with expected-failures.txt.
//   node check.mjs RESULTS.json EXPECTED-FAILURES.txt
// Exits 1 when a required or optimal test fails unlisted, or a listed
// test passes (unless listed as "?id": either outcome). Informational ("check") tests are counted, never gated.
import fs from 'fs'
import tests from './suite/tests/index.mjs'

const [resultsFile, expectedFile] = process.argv.slice(2)
const results = JSON.parse(fs.readFileSync(resultsFile, 'utf8'))
const expected = new Map()
for (const line of fs.readFileSync(expectedFile, 'utf8').split('\n')) {
  const text = line.replace(/#.*/, '').trim()
  if (text === '') continue
  const id = text.split(/\s+/)[0]
  // "?id": either outcome is accepted.
  expected.set(id.replace(/^\?/, ''), { either: id.startsWith('?') })
}

const counts = {}
const unexpected = []
const nowPassing = []
const known = new Set()
for (const suite of tests) {
  for (const test of suite.tests) {
    known.add(test.id)
    const kind = test.kind || 'required'
    const result = results[test.id]
    if (result === undefined) continue // not run here: browser-only, or a dependency failed
    const passed = result === true
    const key = `${kind} ${passed ? 'pass' : 'fail'}`
    counts[key] = (counts[key] || 0) + 1
    if (kind === 'check') continue
    if (!passed && !expected.has(test.id)) {
      unexpected.push(`${kind} ${test.id}: ${JSON.stringify(result)} (${test.name})`)
    }
    if (passed && expected.has(test.id) && !expected.get(test.id).either) nowPassing.push(test.id)
  }
}
const stale = [...expected.keys()].filter(id => !known.has(id))

console.log('cache-tests:', Object.entries(counts).sort().map(([k, v]) => `${k} ${v}`).join(', '))
for (const line of unexpected) console.log(`FAILED (not in expected-failures.txt): ${line}`)
for (const id of nowPassing) console.log(`PASSES now (remove it from expected-failures.txt): ${id}`)
for (const id of stale) console.log(`UNKNOWN test id in expected-failures.txt: ${id}`)
process.exit(unexpected.length + nowPassing.length + stale.length > 0 ? 1 : 0)
