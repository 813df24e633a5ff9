"""Failure signatures (capsule/signature.py): extract from real test-runner output, compare
a later run (reproduces / fixed / inconclusive), normalization, hostile input.

The samples are the output of real runs (pytest 9, unittest on 3.11, jest 30, vitest 4,
mocha 11, cargo 1.95; go test as printed by go 1.21), only paths shortened. One test runs
a real pytest in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tracebox.trace.signature import (
    MAX_ERRORS,
    MAX_FAILED,
    MAX_LINE,
    Signature,
    compare,
    extract,
    normalize,
)

# --------------------------------------------------------------------------- samples

PYTEST_FAIL = """\
============================= test session starts ==============================
platform linux -- Python 3.11.7, pytest-9.2.0, pluggy-1.7.0
rootdir: /home/dev/calc
plugins: anyio-4.16.0, hypothesis-6.170.17
collected 4 items

tests/test_calc.py F.FF                                                  [100%]

=================================== FAILURES ===================================
___________________________________ test_add ___________________________________

>   def test_add(): assert add(1, 1) == 2
                    ^^^^^^^^^^^^^^^^^^^^^
E   assert 3 == 2
E    +  where 3 = add(1, 1)

tests/test_calc.py:3: AssertionError
________________________________ test_param[1] _________________________________

x = 1, tmp_path = PosixPath('/tmp/pytest-of-root/pytest-21/test_param_1_0')

    @pytest.mark.parametrize("x", [1, 2])
>   def test_param(x, tmp_path): assert str(tmp_path) == x
                                 ^^^^^^^^^^^^^^^^^^^^^^^^^
E   AssertionError: assert '/tmp/pytest-of-root/pytest-21/test_param_1_0' == 1
E    +  where '/tmp/pytest-of-root/pytest-21/test_param_1_0' = str(PosixPath('/tmp/pytest-of-root/pytest-21/test_param_1_0'))

tests/test_calc.py:6: AssertionError
________________________________ test_param[2] _________________________________

x = 2, tmp_path = PosixPath('/tmp/pytest-of-root/pytest-21/test_param_2_0')

    @pytest.mark.parametrize("x", [1, 2])
>   def test_param(x, tmp_path): assert str(tmp_path) == x
                                 ^^^^^^^^^^^^^^^^^^^^^^^^^
E   AssertionError: assert '/tmp/pytest-of-root/pytest-21/test_param_2_0' == 2
E    +  where '/tmp/pytest-of-root/pytest-21/test_param_2_0' = str(PosixPath('/tmp/pytest-of-root/pytest-21/test_param_2_0'))

tests/test_calc.py:6: AssertionError
=========================== short test summary info ============================
FAILED tests/test_calc.py::test_add - assert 3 == 2
FAILED tests/test_calc.py::test_param[1] - AssertionError: assert '/tmp/pytes...
FAILED tests/test_calc.py::test_param[2] - AssertionError: assert '/tmp/pytes...
========================= 3 failed, 1 passed in 3.62s ==========================
"""

PYTEST_Q_FAIL = """\
F.FF                                                                     [100%]
=================================== FAILURES ===================================
___________________________________ test_add ___________________________________

>   def test_add(): assert add(1, 1) == 2
                    ^^^^^^^^^^^^^^^^^^^^^
E   assert 3 == 2
E    +  where 3 = add(1, 1)

tests/test_calc.py:3: AssertionError
=========================== short test summary info ============================
FAILED tests/test_calc.py::test_add - assert 3 == 2
1 failed, 3 passed in 0.73s
"""

PYTEST_COLLECT_ERROR = """\
============================= test session starts ==============================
platform linux -- Python 3.11.7, pytest-9.2.0, pluggy-1.7.0
rootdir: /home/dev/calc
collected 4 items / 1 error

==================================== ERRORS ====================================
____________________ ERROR collecting tests/test_broken.py _____________________
ImportError while importing test module '/home/dev/calc/tests/test_broken.py'.
Hint: make sure your test modules/packages have valid Python names.
Traceback:
/usr/lib/python3.11/importlib/__init__.py:126: in import_module
    return _bootstrap._gcd_import(name[level:], package, level)
           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
tests/test_broken.py:1: in <module>
    import nosuchmod
E   ModuleNotFoundError: No module named 'nosuchmod'
=========================== short test summary info ============================
ERROR tests/test_broken.py
!!!!!!!!!!!!!!!!!!!! Interrupted: 1 error during collection !!!!!!!!!!!!!!!!!!!!
=============================== 1 error in 0.62s ===============================
"""

PYTEST_PASS = """\
============================= test session starts ==============================
platform linux -- Python 3.11.7, pytest-9.2.0, pluggy-1.7.0
rootdir: /home/dev/calc
collected 4 items

tests/test_calc.py ....                                                  [100%]

============================== 4 passed in 0.02s ===============================
"""

PYTEST_NO_TESTS = """\
============================= test session starts ==============================
platform linux -- Python 3.11.7, pytest-9.2.0, pluggy-1.7.0
rootdir: /home/dev/calc
collected 0 items

============================ no tests ran in 0.51s =============================
"""

PYTEST_OTHER_FAIL = """\
.F..                                                                     [100%]
=================================== FAILURES ===================================
___________________________________ test_mul ___________________________________

    def test_mul():
>       assert mul(2, 3) == 6
E       assert 5 == 6
E        +  where 5 = mul(2, 3)

tests/test_calc.py:9: AssertionError
=========================== short test summary info ============================
FAILED tests/test_calc.py::test_mul - assert 5 == 6
1 failed, 3 passed in 0.04s
"""

# `pytest --color=yes -q`, the tail, as printed
PYTEST_ANSI = (
    "\x1b[1m\x1b[31mE   assert 3 == 2\x1b[0m\n"
    "\x1b[1m\x1b[31mE    +  where 3 = add(1, 1)\x1b[0m\n\n"
    "\x1b[1m\x1b[31mtests/test_calc.py\x1b[0m:3: AssertionError\n"
    "\x1b[36m\x1b[1m=========================== short test summary info"
    " ============================\x1b[0m\n"
    "\x1b[31mFAILED\x1b[0m tests/test_calc.py::\x1b[1mtest_add\x1b[0m - assert 3 == 2\n"
    "\x1b[31m\x1b[31m\x1b[1m1 failed\x1b[0m, \x1b[32m3 passed\x1b[0m\x1b[31m in 0.77s\x1b[0m\x1b[0m\n"
)
PYTEST_ANSI_HEAD = (
    "\x1b[31m=================================== FAILURES"
    " ===================================\x1b[0m\n"
    "\x1b[31m\x1b[1m___________________________________ test_add"
    " ___________________________________\x1b[0m\n\n"
    ">   \x1b[94mdef\x1b[39;49;00m\x1b[90m \x1b[39;49;00m\x1b[92mtest_add\x1b[39;49;00m():"
    " \x1b[94massert\x1b[39;49;00m add(\x1b[94m1\x1b[39;49;00m, \x1b[94m1\x1b[39;49;00m)"
    " == \x1b[94m2\x1b[39;49;00m\n"
)

UNITTEST_FAIL = """\
FE.
======================================================================
ERROR: test_div (tests.test_calc.CalcTest.test_div)
----------------------------------------------------------------------
Traceback (most recent call last):
  File "/home/dev/calc/tests/test_calc.py", line 7, in test_div
    1 / 0
    ~~^~~
ZeroDivisionError: division by zero

======================================================================
FAIL: test_add (tests.test_calc.CalcTest.test_add)
----------------------------------------------------------------------
Traceback (most recent call last):
  File "/home/dev/calc/tests/test_calc.py", line 5, in test_add
    self.assertEqual(1 + 1, 3)
AssertionError: 2 != 3

----------------------------------------------------------------------
Ran 3 tests in 0.001s

FAILED (failures=1, errors=1)
"""

# Python <= 3.10 prints the id without the method name in the parentheses
UNITTEST_FAIL_PY310 = """\
F..
======================================================================
FAIL: test_add (tests.test_calc.CalcTest)
----------------------------------------------------------------------
Traceback (most recent call last):
  File "/home/dev/calc/tests/test_calc.py", line 5, in test_add
    self.assertEqual(1 + 1, 3)
AssertionError: 2 != 3

----------------------------------------------------------------------
Ran 3 tests in 0.002s

FAILED (failures=1)
"""

UNITTEST_OK = """\
...
----------------------------------------------------------------------
Ran 3 tests in 0.001s

OK
"""

UNITTEST_NONE = """\

----------------------------------------------------------------------
Ran 0 tests in 0.000s

OK
"""

UNITTEST_OTHER_FAIL = """\
..F
======================================================================
FAIL: test_mul (tests.test_calc.CalcTest.test_mul)
----------------------------------------------------------------------
Traceback (most recent call last):
  File "/home/dev/calc/tests/test_calc.py", line 11, in test_mul
    self.assertEqual(2 * 3, 5)
AssertionError: 6 != 5

----------------------------------------------------------------------
Ran 3 tests in 0.001s

FAILED (failures=1)
"""

GO_FAIL = """\
--- FAIL: TestAdd (0.00s)
    calc_test.go:9: Add(1, 2) = 4; want 3
--- FAIL: TestDivide (0.00s)
    --- FAIL: TestDivide/by_zero (0.00s)
        calc_test.go:21: Divide(1, 0): expected an error
FAIL
FAIL\tgithub.com/acme/calc\t0.002s
FAIL
"""

GO_VERBOSE_FAIL = """\
=== RUN   TestAdd
    calc_test.go:9: Add(1, 2) = 4; want 3
--- FAIL: TestAdd (0.00s)
=== RUN   TestSub
    calc_test.go:15: checking 2-1
--- PASS: TestSub (0.00s)
FAIL
FAIL\tgithub.com/acme/calc\t0.003s
FAIL
"""

GO_PANIC = """\
--- FAIL: TestIndex (0.00s)
panic: runtime error: index out of range [3] with length 0 [recovered]
\tpanic: runtime error: index out of range [3] with length 0

goroutine 7 [running]:
testing.tRunner.func1.2({0x4f9a40, 0xc000018168})
\t/usr/local/go/src/testing/testing.go:1545 +0x238
testing.tRunner.func1()
\t/usr/local/go/src/testing/testing.go:1548 +0x397
panic({0x4f9a40?, 0xc000018168?})
\t/usr/local/go/src/runtime/panic.go:914 +0x21f
github.com/acme/calc.TestIndex(0x0?)
\t/home/dev/calc/calc_test.go:27 +0x1d
testing.tRunner(0xc0000a2b60, 0x5191d8)
\t/usr/local/go/src/testing/testing.go:1595 +0xff
created by testing.(*T).Run in goroutine 1
\t/usr/local/go/src/testing/testing.go:1648 +0x3ad
FAIL\tgithub.com/acme/calc\t0.004s
FAIL
"""

GO_BUILD_FAIL = """\
# github.com/acme/calc [github.com/acme/calc.test]
./calc_test.go:9:5: undefined: Sub
FAIL\tgithub.com/acme/calc [build failed]
FAIL
"""

GO_PASS = """\
ok  \tgithub.com/acme/calc\t0.002s
?   \tgithub.com/acme/calc/cmd/calc\t[no test files]
"""

GO_NO_TEST_FILES = """\
?   \tgithub.com/acme/calc\t[no test files]
"""

GO_NO_TESTS_TO_RUN = """\
ok  \tgithub.com/acme/calc\t0.002s [no tests to run]
"""

GO_OTHER_FAIL = """\
--- FAIL: TestMul (0.00s)
    calc_test.go:33: Mul(2, 3) = 5; want 6
FAIL
FAIL\tgithub.com/acme/calc\t0.002s
FAIL
"""

JEST_FAIL = """\
FAIL src/calc.test.js
  calc
    ✕ adds numbers (4 ms)
    ✓ subtracts (1 ms)
    ✕ throws

  ● calc › adds numbers

    expect(received).toBe(expected) // Object.is equality

    Expected: 3
    Received: 4

      2 | describe('calc', () => {
      3 |   test('adds numbers', () => {
    > 4 |     expect(add(1, 2)).toBe(3);
        |                       ^
      5 |   });
      6 |   test('subtracts', () => {
      7 |     expect(2 - 1).toBe(1);

      at Object.toBe (src/calc.test.js:4:23)

  ● calc › throws

    TypeError: Cannot read properties of undefined (reading 'x')

       9 |   test('throws', () => {
      10 |     const o = undefined;
    > 11 |     o.x();
         |       ^
      12 |   });
      13 | });
      14 |

      at Object.x (src/calc.test.js:11:7)

Test Suites: 1 failed, 1 total
Tests:       2 failed, 1 passed, 3 total
Snapshots:   0 total
Time:        0.314 s
Ran all test suites.
"""

JEST_SUITE_FAIL = """\
FAIL src/broken.test.js
  ● Test suite failed to run

    Cannot find module './nope' from 'src/broken.test.js'

    > 1 | const x = require('./nope'); test('a', () => {});
        |           ^
      2 |

      at Resolver._throwModNotFoundError (node_modules/jest-resolve/build/index.js:1031:11)
      at Object.require (src/broken.test.js:1:11)

Test Suites: 1 failed, 1 total
Tests:       0 total
Snapshots:   0 total
Time:        0.245 s
Ran all test suites matching src/broken.test.js.
"""

JEST_PASS = """\
PASS src/calc.test.js
  calc
    ✓ adds numbers (2 ms)
    ✓ subtracts
    ✓ throws (1 ms)

Test Suites: 1 passed, 1 total
Tests:       3 passed, 3 total
Snapshots:   0 total
Time:        0.291 s, estimated 1 s
Ran all test suites.
"""

JEST_NO_TESTS = """\
No tests found, exiting with code 0
In /home/dev/calc
  4 files checked.
  testMatch: **/__tests__/**/*.?([mc])[jt]s?(x), **/?(*.)+(spec|test).?([mc])[jt]s?(x) - 2 matches
  testPathIgnorePatterns: /node_modules/ - 4 matches
  testRegex:  - 0 matches
Pattern: nomatch - 0 matches
"""

JEST_OTHER_FAIL = """\
FAIL src/calc.test.js
  ● calc › multiplies

    expect(received).toBe(expected) // Object.is equality

    Expected: 6
    Received: 5

      at Object.toBe (src/calc.test.js:17:23)

Test Suites: 1 failed, 1 total
Tests:       1 failed, 3 passed, 4 total
Snapshots:   0 total
Time:        0.301 s
Ran all test suites.
"""

NPM_TEST_PREFIX = """\

> calc@1.0.0 test
> jest

"""

VITEST_FAIL = """\

 RUN  v4.1.12 /home/dev/calc

 ❯ src/calc.test.js (3 tests | 2 failed) 7ms
     × adds numbers 5ms
     ✓ subtracts 0ms
     × throws 1ms

⎯⎯⎯⎯⎯⎯⎯ Failed Tests 2 ⎯⎯⎯⎯⎯⎯⎯

 FAIL  src/calc.test.js > calc > adds numbers
AssertionError: expected 4 to be 3 // Object.is equality

- Expected
+ Received

- 3
+ 4

 ❯ src/calc.test.js:5:23
      3| describe('calc', () => {
      4|   test('adds numbers', () => {
      5|     expect(add(1, 2)).toBe(3);
       |                       ^
      6|   });
      7|   test('subtracts', () => {

⎯⎯⎯⎯⎯⎯⎯⎯⎯⎯⎯⎯⎯⎯⎯⎯⎯⎯⎯⎯⎯⎯⎯⎯[1/2]⎯

 FAIL  src/calc.test.js > calc > throws
TypeError: Cannot read properties of undefined (reading 'x')
 ❯ src/calc.test.js:12:7
     10|   test('throws', () => {
     11|     const o = undefined;
     12|     o.x();
       |       ^
     13|   });
     14| });

⎯⎯⎯⎯⎯⎯⎯⎯⎯⎯⎯⎯⎯⎯⎯⎯⎯⎯⎯⎯⎯⎯⎯⎯[2/2]⎯


 Test Files  1 failed (1)
      Tests  2 failed | 1 passed (3)
   Start at  08:36:58
   Duration  200ms (transform 15ms, setup 0ms, import 31ms, tests 7ms, environment 0ms)

"""

# the same run with colors, as vitest prints it to a terminal (first failure and summary)
VITEST_ANSI = (
    "\n\x1b[1m\x1b[30m\x1b[46m RUN \x1b[49m\x1b[39m\x1b[22m \x1b[36mv4.1.12 \x1b[39m"
    "\x1b[90m/home/dev/calc\x1b[39m\n\n"
    "\x1b[31m⎯⎯⎯⎯⎯⎯⎯\x1b[39m\x1b[1m\x1b[41m Failed Tests 2 \x1b[49m\x1b[22m\x1b[31m⎯⎯⎯⎯⎯⎯⎯\x1b[39m\n\n"
    "\x1b[41m\x1b[1m FAIL \x1b[22m\x1b[49m src/calc.test.js\x1b[2m > \x1b[22mcalc\x1b[2m > "
    "\x1b[22madds numbers\n"
    "\x1b[31m\x1b[1mAssertionError\x1b[22m: expected 4 to be 3 // Object.is equality\x1b[39m\n\n"
    "\x1b[41m\x1b[1m FAIL \x1b[22m\x1b[49m src/calc.test.js\x1b[2m > \x1b[22mcalc\x1b[2m > "
    "\x1b[22mthrows\n"
    "\x1b[31m\x1b[1mTypeError\x1b[22m: Cannot read properties of undefined (reading 'x')\x1b[39m\n"
    "\n\n\x1b[2m Test Files \x1b[22m \x1b[1m\x1b[31m1 failed\x1b[39m\x1b[22m\x1b[90m (1)\x1b[39m\n"
    "\x1b[2m      Tests \x1b[22m \x1b[1m\x1b[31m2 failed\x1b[39m\x1b[22m\x1b[2m | \x1b[22m\x1b[1m"
    "\x1b[32m1 passed\x1b[39m\x1b[22m\x1b[90m (3)\x1b[39m\n"
    "\x1b[2m   Start at \x1b[22m 08:36:55\n"
)

VITEST_PASS = """\

 RUN  v4.1.12 /home/dev/calc

 ✓ src/calc.test.js (3 tests) 2ms

 Test Files  1 passed (1)
      Tests  3 passed (3)
   Start at  08:36:59
   Duration  185ms (transform 14ms, setup 0ms, import 23ms, tests 2ms, environment 0ms)

"""

VITEST_NO_FILES = """\

 RUN  v4.1.12 /home/dev/calc

No test files found, exiting with code 0

filter: nomatch
include: **/*.{test,spec}.?(c|m)[jt]s?(x)
exclude:  **/node_modules/**, **/.git/**
"""

VITEST_OTHER_FAIL = """\

 RUN  v4.1.12 /home/dev/calc

 FAIL  src/calc.test.js > calc > multiplies
AssertionError: expected 5 to be 6 // Object.is equality

 Test Files  1 failed (1)
      Tests  1 failed | 3 passed (4)
   Start at  08:40:12
   Duration  190ms (transform 14ms, setup 0ms, import 23ms, tests 2ms, environment 0ms)
"""

MOCHA_FAIL = """\


  calc
    1) adds numbers
    ✔ subtracts
    errors
      2) throws


  1 passing (3ms)
  2 failing

  1) calc
       adds numbers:

      AssertionError [ERR_ASSERTION]: Expected values to be strictly equal:

4 !== 3

      + expected - actual

      -4
      +3

      at Context.<anonymous> (test/calc.test.js:5:12)
      at process.processImmediate (node:internal/timers:483:21)

  2) calc
       errors
         throws:
     TypeError: Cannot read properties of undefined (reading 'x')
      at Context.<anonymous> (test/calc.test.js:13:9)
      at process.processImmediate (node:internal/timers:483:21)



"""

MOCHA_PASS = """\


  calc
    ✔ adds numbers
    ✔ subtracts
    errors
      ✔ throws


  3 passing (4ms)

"""

MOCHA_NONE = """\



  0 passing (1ms)

"""

MOCHA_OTHER_FAIL = """\


  calc
    ✔ adds numbers
    1) multiplies


  1 passing (3ms)
  1 failing

  1) calc
       multiplies:
     AssertionError [ERR_ASSERTION]: Expected values to be strictly equal:

5 !== 6

      at Context.<anonymous> (test/calc.test.js:9:12)



"""

CARGO_FAIL = """\
   Compiling calc v0.1.0 (/home/dev/calc)
    Finished `test` profile [unoptimized + debuginfo] target(s) in 0.42s
     Running unittests src/lib.rs (target/debug/deps/calc-c6626fb655a8d231)

running 3 tests
test tests::adds ... FAILED
test tests::index ... FAILED
test tests::subtracts ... ok

failures:

---- tests::adds stdout ----

thread 'tests::adds' (10339) panicked at src/lib.rs:6:17:
assertion `left == right` failed
  left: 4
 right: 3
note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace

---- tests::index stdout ----

thread 'tests::index' (10340) panicked at src/lib.rs:10:71:
index out of bounds: the len is 0 but the index is 3


failures:
    tests::adds
    tests::index

test result: FAILED. 1 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s

error: test failed, to rerun pass `--lib`
"""

CARGO_COMPILE_ERROR = """\
   Compiling calc v0.1.0 (/home/dev/calc)
error[E0425]: cannot find function `sub` in this scope
 --> src/lib.rs:8:33
  |
8 |     fn subtracts() { assert_eq!(sub(1, 1), 0); }
  |                                 ^^^ not found in this scope
  |
help: use the `.` operator to call the method `Sub::sub` on `{integer}`
  |
8 -     fn subtracts() { assert_eq!(sub(1, 1), 0); }
8 +     fn subtracts() { assert_eq!(1.sub(1), 0); }
  |

For more information about this error, try `rustc --explain E0425`.
error: could not compile `calc` (lib test) due to 1 previous error
"""

CARGO_PASS = """\
   Compiling calc v0.1.0 (/home/dev/calc)
    Finished `test` profile [unoptimized + debuginfo] target(s) in 0.21s
     Running unittests src/lib.rs (target/debug/deps/calc-c6626fb655a8d231)

running 3 tests
test tests::adds ... ok
test tests::index ... ok
test tests::subtracts ... ok

test result: ok. 3 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s

   Doc-tests calc

running 0 tests

test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s

"""

CARGO_NONE = """\
    Finished `test` profile [unoptimized + debuginfo] target(s) in 0.02s
     Running unittests src/lib.rs (target/debug/deps/calc-c6626fb655a8d231)

running 0 tests

test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 3 filtered out; finished in 0.00s

"""

CARGO_OTHER_FAIL = """\
     Running unittests src/lib.rs (target/debug/deps/calc-c6626fb655a8d231)

running 3 tests
test tests::adds ... ok
test tests::index ... ok
test tests::muls ... FAILED

failures:

---- tests::muls stdout ----

thread 'tests::muls' (11211) panicked at src/lib.rs:14:17:
assertion `left == right` failed
  left: 5
 right: 6


failures:
    tests::muls

test result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s

error: test failed, to rerun pass `--lib`
"""

GENERIC_FAIL = """\
+ ./scripts/release.sh
Building assets...
  dist/app.js  41.2kb
fatal: not a git repository (or any of the parent directories): .git
make: *** [Makefile:12: release] Error 128
"""

GENERIC_TRACEBACK = """\
Loading settings...
Traceback (most recent call last):
  File "/home/dev/app/manage.py", line 22, in <module>
    main()
  File "/home/dev/app/manage.py", line 18, in main
    raise RuntimeError(f"config missing: {path}")
RuntimeError: config missing: /tmp/tmpa1b2c3d4/settings.toml
"""

# framework -> (failing run, command, passing run, a different failure, nothing ran)
FRAMEWORKS = {
    "pytest": (PYTEST_FAIL, "pytest", PYTEST_PASS, PYTEST_OTHER_FAIL, PYTEST_NO_TESTS),
    "unittest": (
        UNITTEST_FAIL,
        "python -m unittest",
        UNITTEST_OK,
        UNITTEST_OTHER_FAIL,
        UNITTEST_NONE,
    ),
    "go": (GO_FAIL, "go test ./...", GO_PASS, GO_OTHER_FAIL, GO_NO_TEST_FILES),
    "jest": (JEST_FAIL, "npx jest", JEST_PASS, JEST_OTHER_FAIL, JEST_NO_TESTS),
    "vitest": (VITEST_FAIL, "npx vitest run", VITEST_PASS, VITEST_OTHER_FAIL, VITEST_NO_FILES),
    "mocha": (MOCHA_FAIL, "npx mocha", MOCHA_PASS, MOCHA_OTHER_FAIL, MOCHA_NONE),
    "cargo": (CARGO_FAIL, "cargo test", CARGO_PASS, CARGO_OTHER_FAIL, CARGO_NONE),
}
EXIT = {"pytest": 1, "unittest": 1, "go": 1, "jest": 1, "vitest": 1, "mocha": 2, "cargo": 101}
ALL_SAMPLES = [
    v for k, v in sorted(globals().items()) if k.isupper() and isinstance(v, str) and "\n" in v
]


# --------------------------------------------------------------------------- extract


def test_extract_pytest_full_output():
    sig = extract(PYTEST_FAIL, "pytest", 1)
    assert sig.framework == "pytest"
    assert sig.failed == (
        "tests/test_calc.py::test_add",
        "tests/test_calc.py::test_param[1]",
        "tests/test_calc.py::test_param[2]",
    )
    # the E lines, in full (the short summary truncates them)
    assert sig.errors[0] == "assert 3 == 2"
    assert sig.errors[1] == (
        "AssertionError: assert '/tmp/pytest-of-root/pytest-21/test_param_1_0' == 1"
    )
    assert len(sig.errors) == 3
    assert sig.summary == "3 failed, 1 passed in 3.62s"
    assert sig.exit_code == 1


def test_extract_pytest_quiet_output():
    sig = extract(PYTEST_Q_FAIL, "python -m pytest -q", 1)
    assert sig.framework == "pytest"
    assert sig.failed == ("tests/test_calc.py::test_add",)
    assert sig.errors == ("assert 3 == 2",)
    assert sig.summary == "1 failed, 3 passed in 0.73s"


def test_extract_pytest_without_command_hint():
    assert extract(PYTEST_FAIL).framework == "pytest"
    assert extract(PYTEST_Q_FAIL).framework == "pytest"


def test_extract_pytest_collection_error():
    sig = extract(PYTEST_COLLECT_ERROR, "pytest", 2)
    assert sig.framework == "pytest"
    assert sig.failed == ("tests/test_broken.py",)
    assert sig.errors == ("ModuleNotFoundError: No module named 'nosuchmod'",)
    assert sig.summary == "1 error in 0.62s"


def test_extract_pytest_tb_no_uses_short_summary_messages():
    out = """\
.F                                                                       [100%]
=========================== short test summary info ============================
FAILED tests/test_calc.py::test_add - ZeroDivisionError: division by zero
1 failed, 1 passed in 0.01s
"""
    sig = extract(out, "pytest --tb=no", 1)
    assert sig.failed == ("tests/test_calc.py::test_add",)
    assert sig.errors == ("ZeroDivisionError: division by zero",)


def test_extract_pytest_verbose_and_usage_error():
    out = """\
tests/test_calc.py::test_add FAILED                                      [ 50%]
tests/test_calc.py::test_sub PASSED                                      [100%]
"""
    assert extract(out, "pytest -v --tb=no -rN", 1).failed == ("tests/test_calc.py::test_add",)
    usage = "ERROR: file or directory not found: tests/nope.py\n\nno tests ran in 0.01s\n"
    sig = extract(usage, "pytest tests/nope.py", 4)
    assert sig.framework == "pytest"
    assert sig.failed == ()  # "ERROR:" is not a test id
    assert sig.errors == ("ERROR: file or directory not found: tests/nope.py",)
    assert sig.summary == "no tests ran in 0.01s"


def test_extract_unittest():
    sig = extract(UNITTEST_FAIL, "python -m unittest", 1)
    assert sig.framework == "unittest"
    assert sig.failed == (
        "test_div (tests.test_calc.CalcTest.test_div)",
        "test_add (tests.test_calc.CalcTest.test_add)",
    )
    assert sig.errors == ("ZeroDivisionError: division by zero", "AssertionError: 2 != 3")
    assert sig.summary == "FAILED (failures=1, errors=1)"
    assert extract(UNITTEST_FAIL).framework == "unittest"
    assert extract(UNITTEST_OK, None, 0).summary == "OK"


def test_extract_unittest_chained_traceback_takes_the_last_exception():
    out = """\
E
======================================================================
ERROR: test_load (tests.test_cfg.CfgTest.test_load)
----------------------------------------------------------------------
Traceback (most recent call last):
  File "/home/dev/app/cfg.py", line 4, in load
    return open(path).read()
           ^^^^^^^^^^
FileNotFoundError: [Errno 2] No such file or directory: 'app.toml'

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "/home/dev/app/tests/test_cfg.py", line 6, in test_load
    load("app.toml")
  File "/home/dev/app/cfg.py", line 6, in load
    raise ConfigError("cannot read app.toml") from e
cfg.ConfigError: cannot read app.toml

----------------------------------------------------------------------
Ran 1 test in 0.001s

FAILED (errors=1)
"""
    sig = extract(out, "python -m unittest", 1)
    assert sig.failed == ("test_load (tests.test_cfg.CfgTest.test_load)",)
    assert sig.errors == ("cfg.ConfigError: cannot read app.toml",)


def test_extract_go():
    sig = extract(GO_FAIL, "go test ./...", 1)
    assert sig.framework == "go"
    assert sig.failed == ("TestAdd", "TestDivide", "TestDivide/by_zero")
    assert sig.errors == (
        "calc_test.go:9: Add(1, 2) = 4; want 3",
        "calc_test.go:21: Divide(1, 0): expected an error",
    )
    assert sig.summary == "FAIL\tgithub.com/acme/calc\t0.002s"
    assert extract(GO_FAIL).framework == "go"


def test_extract_go_verbose_keeps_only_failing_tests_logs():
    sig = extract(GO_VERBOSE_FAIL, "go test -v ./...", 1)
    assert sig.failed == ("TestAdd",)
    assert sig.errors == ("calc_test.go:9: Add(1, 2) = 4; want 3",)


def test_extract_go_panic_and_build_failure():
    sig = extract(GO_PANIC, "go test", 2)
    assert sig.failed == ("TestIndex",)
    assert sig.errors == ("panic: runtime error: index out of range [3] with length 0 [recovered]",)
    build = extract(GO_BUILD_FAIL, "go test ./...", 1)
    assert build.framework == "go"
    assert build.failed == ()
    assert build.errors == ("./calc_test.go:9:5: undefined: Sub",)
    assert build.summary == "FAIL\tgithub.com/acme/calc [build failed]"


def test_extract_jest():
    sig = extract(JEST_FAIL, "npx jest", 1)
    assert sig.framework == "jest"
    assert sig.failed == ("calc › adds numbers", "calc › throws")
    assert sig.errors == (
        "expect(received).toBe(expected) // Object.is equality",
        "TypeError: Cannot read properties of undefined (reading 'x')",
    )
    assert sig.summary == "Tests:       2 failed, 1 passed, 3 total"
    # `npm test` says nothing about the runner: the output does
    assert extract(NPM_TEST_PREFIX + JEST_FAIL, "npm test", 1) == sig


def test_extract_jest_suite_failed_to_run():
    sig = extract(JEST_SUITE_FAIL, "npm test", 1)
    assert sig.framework == "jest"
    assert sig.failed == ("src/broken.test.js",)
    assert sig.errors == ("Cannot find module './nope' from 'src/broken.test.js'",)


def test_extract_vitest():
    sig = extract(VITEST_FAIL, "npm test", 1)
    assert sig.framework == "vitest"
    assert sig.failed == (
        "src/calc.test.js > calc > adds numbers",
        "src/calc.test.js > calc > throws",
    )
    assert sig.errors == (
        "AssertionError: expected 4 to be 3 // Object.is equality",
        "TypeError: Cannot read properties of undefined (reading 'x')",
    )
    assert sig.summary == "Tests  2 failed | 1 passed (3)"


def test_extract_mocha():
    sig = extract(MOCHA_FAIL, "npx mocha", 2)
    assert sig.framework == "mocha"
    assert sig.failed == ("calc adds numbers", "calc errors throws")
    assert sig.errors == (
        "AssertionError [ERR_ASSERTION]: Expected values to be strictly equal:",
        "TypeError: Cannot read properties of undefined (reading 'x')",
    )
    assert sig.summary == "1 passing (3ms), 2 failing"


def test_extract_mocha_one_line_title():
    out = """\
  0 passing (2ms)
  1 failing

  1) math adds:
     Error: expected 3
      at Context.<anonymous> (test/math.js:4:11)
"""
    sig = extract(out, "mocha", 1)
    assert sig.failed == ("math adds",)
    assert sig.errors == ("Error: expected 3",)


def test_extract_cargo():
    sig = extract(CARGO_FAIL, "cargo test", 101)
    assert sig.framework == "cargo"
    assert sig.failed == ("tests::adds", "tests::index")
    assert sig.errors == (
        "assertion `left == right` failed",
        "index out of bounds: the len is 0 but the index is 3",
    )
    assert sig.summary.startswith("test result: FAILED. 1 passed; 2 failed;")
    assert extract(CARGO_FAIL).framework == "cargo"


def test_extract_cargo_old_panic_format_and_compile_error():
    old = """\
running 1 test
test tests::adds ... FAILED

failures:

---- tests::adds stdout ----
thread 'tests::adds' panicked at 'assertion failed: `(left == right)`
  left: `4`,
 right: `3`', src/lib.rs:6:5
thread 'tests::parse' panicked at 'called `Result::unwrap()` on an `Err` value', src/lib.rs:9:5

failures:
    tests::adds

test result: FAILED. 0 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out
"""
    sig = extract(old, "cargo test", 101)
    assert sig.failed == ("tests::adds",)
    assert sig.errors == ("called `Result::unwrap()` on an `Err` value",)
    comp = extract(CARGO_COMPILE_ERROR, None, 101)
    assert comp.framework == "cargo"
    assert comp.failed == ()
    assert comp.errors == (
        "error[E0425]: cannot find function `sub` in this scope",
        "error: could not compile `calc` (lib test) due to 1 previous error",
    )


def test_extract_generic():
    sig = extract(GENERIC_FAIL, "make release", 2)
    assert sig.framework == "generic"
    assert sig.failed == ()
    # make's own "*** ... Error 128" says nothing about the failure
    assert sig.errors == ("fatal: not a git repository (or any of the parent directories): .git",)
    tb = extract(GENERIC_TRACEBACK, "python manage.py migrate", 1)
    assert tb.framework == "generic"
    assert tb.errors == ("RuntimeError: config missing: /tmp/tmpa1b2c3d4/settings.toml",)


def test_extract_generic_keeps_the_last_five():
    out = "".join(f"step {i}\nerror: thing {i} went wrong\n" for i in range(12))
    sig = extract(out, "./build.sh", 1)
    assert sig.framework == "generic"
    assert sig.errors == tuple(f"error: thing {i} went wrong" for i in range(7, 12))


def test_extract_nothing_recognizable():
    assert extract("hello\nworld\n", "echo hi", 0) == Signature(None, (), (), None, 0)
    assert extract("", None, None) == Signature(None)
    assert extract(None) == Signature(None)  # type: ignore[arg-type]
    assert extract("all good\n", None, 3).framework == "generic"
    # the command alone is a hint: pytest died before printing anything recognizable
    assert extract("", "pytest -x", 3).framework == "pytest"


def test_extract_caps():
    out = "".join(
        f"FAILED tests/test_x.py::test_{i} - AssertionError: {i} {'x' * 900}\n"
        for i in range(MAX_FAILED + 50)
    )
    sig = extract("=" * 10 + " short test summary info " + "=" * 10 + "\n" + out, None, 1)
    assert len(sig.failed) == MAX_FAILED
    assert len(sig.errors) == MAX_ERRORS
    assert all(len(e) <= MAX_LINE for e in sig.errors)


# --------------------------------------------------------------------------- compare


@pytest.mark.parametrize("framework", sorted(FRAMEWORKS))
def test_compare_per_framework(framework):
    fail, command, passing, other, nothing = FRAMEWORKS[framework]
    code = EXIT[framework]
    sig = extract(fail, command, code)
    assert sig.framework == framework
    assert sig.failed and sig.errors

    verdict, ev = compare(sig, fail, code)
    assert verdict == "reproduces", ev
    assert ev["matched_failed"] == list(sig.failed)
    assert ev["still_failing"] == list(sig.failed)
    assert ev["now_failing"] == []
    assert ev["framework"] == framework
    assert ev["exit_code"] == ev["expected_exit_code"] == code

    verdict, ev = compare(sig, passing, 0)
    assert verdict == "fixed", ev
    assert ev["matched_failed"] == [] and ev["still_failing"] == []
    assert ev["summary"]

    verdict, ev = compare(sig, other, code)
    assert verdict == "inconclusive", ev
    assert "different failure" in ev["reason"]
    assert ev["matched_failed"] == []
    assert ev["now_failing"]

    verdict, ev = compare(sig, nothing, 0)
    assert verdict == "inconclusive", ev
    assert "exit code 0" in ev["reason"]


def test_compare_evidence_shape():
    sig = extract(PYTEST_FAIL, "pytest", 1)
    verdict, ev = compare(sig, PYTEST_FAIL, 1)
    assert set(ev) == {
        "exit_code",
        "expected_exit_code",
        "framework",
        "matched_failed",
        "matched_errors",
        "still_failing",
        "now_failing",
        "summary",
        "reason",
    }
    assert ev["matched_errors"] == list(sig.errors)
    assert ev["summary"] == "3 failed, 1 passed in 3.62s"
    assert isinstance(ev["reason"], str) and ev["reason"]
    json.dumps(ev)


def test_compare_partial_reproduction():
    sig = extract(PYTEST_FAIL, "pytest", 1)
    verdict, ev = compare(sig, PYTEST_Q_FAIL, 1)  # only test_add still fails
    assert verdict == "reproduces"
    assert ev["matched_failed"] == ["tests/test_calc.py::test_add"]
    assert "test_add fails again" in ev["reason"]


def test_compare_pytest_rerun_with_new_durations_and_tmp_paths():
    rerun = (
        PYTEST_FAIL.replace("pytest-21", "pytest-307")
        .replace("3.62s", "0.41s")
        .replace("pytest-of-root", "pytest-of-ci")
    )
    full = extract(PYTEST_FAIL, "pytest", 1)
    # an errors-only signature (no ids): the errors must match across the two runs
    sig = Signature("pytest", (), full.errors[1:], full.summary, 1)
    verdict, ev = compare(sig, rerun, 1)
    assert verdict == "reproduces", ev
    assert ev["matched_errors"] == list(full.errors[1:])


def test_compare_errors_only_signatures():
    go = extract(GO_BUILD_FAIL, "go test ./...", 1)
    assert compare(go, GO_BUILD_FAIL, 1)[0] == "reproduces"
    assert compare(go, GO_FAIL, 1)[0] == "inconclusive"
    cargo = extract(CARGO_COMPILE_ERROR, "cargo test", 101)
    verdict, ev = compare(cargo, CARGO_COMPILE_ERROR.replace("8:33", "9:33"), 101)
    assert verdict == "reproduces"
    assert "the expected error appears again" in ev["reason"]
    assert compare(cargo, CARGO_PASS, 0)[0] == "fixed"


def test_compare_go_panic_with_other_addresses():
    sig = Signature("go", (), ("panic: runtime error: index out of range [3] with length 0",))
    rerun = GO_PANIC.replace("0xc000018168", "0xc0000b4030").replace("0.004s", "0.117s")
    verdict, ev = compare(sig, rerun, 2)
    assert verdict == "reproduces"  # prefix of the found "... [recovered]" line
    assert ev["matched_errors"] == list(sig.errors)


def test_compare_truncated_expected_error_is_a_prefix():
    sig = Signature("pytest", (), ("AssertionError: assert '/tmp/pytes...",))
    assert compare(sig, PYTEST_FAIL, 1)[0] == "reproduces"
    other = Signature("pytest", (), ("AssertionError: assert 'something else'",))
    assert compare(other, PYTEST_FAIL, 1)[0] == "inconclusive"


def test_compare_unittest_id_styles_across_python_versions():
    sig = extract(UNITTEST_FAIL, "python -m unittest", 1)
    verdict, ev = compare(sig, UNITTEST_FAIL_PY310, 1)
    assert verdict == "reproduces"
    assert ev["matched_failed"] == ["test_add (tests.test_calc.CalcTest.test_add)"]
    assert ev["still_failing"] == ["test_add (tests.test_calc.CalcTest)"]


def test_compare_pytest_ids_from_another_rootdir():
    sig = extract(PYTEST_Q_FAIL, "pytest", 1)
    rerun = PYTEST_Q_FAIL.replace("FAILED tests/test_calc.py::", "FAILED test_calc.py::")
    assert compare(sig, rerun, 1)[0] == "reproduces"


def test_compare_a_different_failure_is_inconclusive():
    sig = extract(PYTEST_FAIL, "pytest", 1)
    verdict, ev = compare(sig, PYTEST_OTHER_FAIL, 1)
    assert verdict == "inconclusive"
    assert ev["now_failing"] == ["tests/test_calc.py::test_mul"]
    assert ev["still_failing"] == []
    assert "different failure" in ev["reason"]
    # a crash before any test: no ids at all
    verdict, ev = compare(sig, "bash: pytest: command not found\n", 127)
    assert verdict == "inconclusive"
    assert "different failure" in ev["reason"]


@pytest.mark.parametrize(
    "output",
    [
        PYTEST_NO_TESTS,
        "\nno tests ran in 0.01s\n",
        "============================ 4 deselected in 0.01s =============================\n",
        "",
        "some unrelated chatter\n",
    ],
)
def test_compare_pytest_nothing_ran_with_exit_0_is_inconclusive(output):
    sig = extract(PYTEST_FAIL, "pytest", 1)
    verdict, ev = compare(sig, output, 0)
    assert verdict == "inconclusive", ev
    assert ev["reason"].startswith("exit code 0, but")


def test_compare_pytest_exit_5():
    sig = extract(PYTEST_FAIL, "pytest", 1)
    verdict, ev = compare(sig, PYTEST_NO_TESTS, 5)
    assert verdict == "inconclusive"
    assert ev["reason"] == "exit code 5, and no tests ran"


@pytest.mark.parametrize(
    ("fail", "command", "nothing"),
    [
        (GO_FAIL, "go test ./...", GO_NO_TESTS_TO_RUN),
        (JEST_FAIL, "npx jest", JEST_NO_TESTS),
        (VITEST_FAIL, "npx vitest run", VITEST_NO_FILES),
        (
            JEST_FAIL,
            "npx jest",
            "Test Suites: 1 skipped, 0 of 1 total\nTests:       3 skipped, 3 total\n",
        ),
    ],
)
def test_compare_other_frameworks_nothing_ran(fail, command, nothing):
    sig = extract(fail, command, 1)
    assert compare(sig, nothing, 0)[0] == "inconclusive"


def test_compare_exit_0_but_still_failing_is_inconclusive():
    sig = extract(PYTEST_FAIL, "pytest", 1)
    verdict, ev = compare(sig, PYTEST_Q_FAIL, 0)  # e.g. `pytest || true`
    assert verdict == "inconclusive"
    assert ev["matched_failed"] == ["tests/test_calc.py::test_add"]
    assert "still reported failing" in ev["reason"]


def test_compare_unknown_exit_code():
    sig = extract(PYTEST_FAIL, "pytest", 1)
    assert compare(sig, PYTEST_FAIL, None)[0] == "reproduces"  # failures found
    assert compare(sig, PYTEST_PASS, None)[0] == "inconclusive"
    assert compare(sig, "", None)[0] == "inconclusive"


def test_compare_generic():
    sig = extract(GENERIC_FAIL, "make release", 2)
    verdict, ev = compare(sig, GENERIC_FAIL, 2)
    assert verdict == "reproduces"
    assert ev["matched_errors"] == list(sig.errors)
    assert compare(sig, "Building assets...\ndone\n", 0)[0] == "fixed"
    verdict, ev = compare(sig, "Error: disk full\n", 1)
    assert verdict == "inconclusive"
    assert "different failure" in ev["reason"]
    # the same Python error under another temporary directory
    tb = extract(GENERIC_TRACEBACK, "python manage.py", 1)
    rerun = GENERIC_TRACEBACK.replace("tmpa1b2c3d4", "tmpzz9_x1")
    assert compare(tb, rerun, 1)[0] == "reproduces"
    # no framework and nothing to match
    empty = Signature(None)
    assert compare(empty, "", 0)[0] == "fixed"
    assert compare(empty, "boom\n", 1)[0] == "inconclusive"


def test_compare_accepts_a_dict():
    sig = extract(GO_FAIL, "go test", 1)
    assert compare(sig.to_dict(), GO_FAIL, 1)[0] == "reproduces"  # type: ignore[arg-type]


# --------------------------------------------------------------------- normalization


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("object at 0x7f3a2b1c4d90 is gone", "object at 0x55d0e1a2b3c4 is gone"),
        ("3 failed, 1 passed in 0.03s", "3 failed, 1 passed in 12.50s"),
        ("--- FAIL: TestAdd (0.00s)", "--- FAIL: TestAdd (1.27s)"),
        ("timeout after 1500ms", "timeout after 2000ms"),
        (
            "FileNotFoundError: '/tmp/pytest-of-root/pytest-21/test_x0/a.txt'",
            "FileNotFoundError: '/tmp/pytest-of-ci/pytest-3/test_x0/a.txt'",
        ),
        (
            "PermissionError: '/private/var/folders/xy/abc123/T/tmpq/out'",
            "PermissionError: '/var/folders/zz/def456/T/tmpr/out'",
        ),
        ("Error:   too    many\tspaces ", "Error: too many spaces"),
        ("\x1b[31mAssertionError\x1b[0m: boom", "AssertionError: boom"),
    ],
)
def test_normalize_equal(a, b):
    assert normalize(a) == normalize(b)


def test_normalize_keeps_what_matters():
    assert normalize("assert 3 == 2") != normalize("assert 4 == 2")
    assert normalize("/home/dev/a.py:3: boom") == "/home/dev/a.py:3: boom"
    assert normalize(None) == ""  # type: ignore[arg-type]


# ------------------------------------------------------------------ robustness


def test_ansi_colored_output():
    plain = extract(PYTEST_Q_FAIL.split("===\n", 1)[1], "pytest", 1)
    colored = extract(PYTEST_ANSI_HEAD + PYTEST_ANSI, "pytest", 1)
    assert colored.failed == ("tests/test_calc.py::test_add",)
    assert colored.errors == ("assert 3 == 2",)
    assert colored.summary == "1 failed, 3 passed in 0.77s"
    assert plain.failed == colored.failed
    vt = extract(VITEST_ANSI, "vitest", 1)
    assert vt.framework == "vitest"
    assert vt.failed == extract(VITEST_FAIL, "vitest", 1).failed
    assert vt.errors == extract(VITEST_FAIL, "vitest", 1).errors
    assert vt.summary == "Tests  2 failed | 1 passed (3)"
    assert compare(extract(VITEST_FAIL, "vitest", 1), VITEST_ANSI, 1)[0] == "reproduces"


@pytest.mark.parametrize("name", sorted(FRAMEWORKS))
def test_crlf_output(name):
    fail, command, *_ = FRAMEWORKS[name]
    crlf = fail.replace("\n", "\r\n")
    assert extract(crlf, command, 1) == extract(fail, command, 1)
    assert compare(extract(fail, command, 1), crlf, 1)[0] == "reproduces"


def test_carriage_return_progress_lines():
    out = "collecting ... \rcollecting 4 items\r" + PYTEST_Q_FAIL
    assert extract(out, "pytest", 1) == extract(PYTEST_Q_FAIL, "pytest", 1)


def test_binary_junk():
    junk = bytes(range(256)).decode("latin-1") * 400
    sig = extract(junk + "\x00\x00" + PYTEST_Q_FAIL + "\x07\x08", "pytest", 1)
    assert sig.failed == ("tests/test_calc.py::test_add",)
    assert sig.errors == ("assert 3 == 2",)
    assert extract(os.urandom(100_000).decode("latin-1"), None, 1).framework in (None, "generic")
    assert extract(b"\xff\xfe garbage \x00 " + PYTEST_Q_FAIL.encode(), "pytest", 1).failed  # type: ignore[arg-type]
    assert compare(Signature("pytest", ("x",)), "\ud800\udfff\x00", 1)[0] == "inconclusive"


def test_huge_output_returns():
    filler = ("collecting ... " + "x" * 70 + "\n") * 240_000  # ~20 MB
    out = filler + PYTEST_Q_FAIL
    assert len(out) > 20_000_000
    sig = extract(out, "pytest", 1)
    assert sig.failed == ("tests/test_calc.py::test_add",)
    assert compare(sig, out, 1)[0] == "reproduces"
    # one 20 MB line, and a 20 MB run of error-looking lines
    assert extract("a" * 20_000_000, None, 1).framework == "generic"
    many = extract("Error: boom 0x1234 in 0.01s /tmp/x\n" * 600_000, None, 1)
    assert len(many.errors) <= 5
    assert compare(many, "=" * 20_000_000, 1)[0] in ("reproduces", "inconclusive")


# ------------------------------------------------------------------- to/from dict


@pytest.mark.parametrize("sample", ALL_SAMPLES, ids=lambda s: s.strip().split("\n")[0][:30])
def test_to_dict_round_trip(sample):
    sig = extract(sample, None, 1)
    d = sig.to_dict()
    assert isinstance(d["failed"], list) and isinstance(d["errors"], list)
    again = Signature.from_dict(json.loads(json.dumps(d)))
    assert again == sig


def test_positional_construction():
    sig = Signature("pytest", ("a::b",), ("boom",), "1 failed in 0.1s", 1)
    assert Signature.from_dict(sig.to_dict()) == sig
    with pytest.raises(AttributeError):
        sig.framework = "go"  # type: ignore[misc]


class _EvilList(list):
    def __getitem__(self, i):
        raise RuntimeError("nope")

    def __iter__(self):
        raise RuntimeError("nope")


@pytest.mark.parametrize(
    "d",
    [
        {},
        {"framework": 3, "failed": "abc", "errors": {"a": 1}, "summary": [], "exit_code": "1"},
        {"framework": None, "failed": None, "errors": None, "summary": None, "exit_code": None},
        {"framework": "", "failed": [1, None, {}, [], "ok"], "errors": [b"x", 2.5, "e"]},
        {"exit_code": True},
        {"exit_code": 1.5},
        {"exit_code": 10**100},
        {"framework": "x" * 10_000, "summary": "s" * 10_000},
        {"failed": ["t" * 100_000] * 3},
        {"failed": ["t"] * 1_000_000, "errors": ["e"] * 1_000_000},
        {"failed": _EvilList(["a"]), "errors": _EvilList(["b"])},
        {"failed": ("a", "b"), "errors": iter(["x"])},
        {1: 2, None: 3, ("t",): 4},
    ],
)
def test_from_dict_hostile(d):
    sig = Signature.from_dict(d)
    assert isinstance(sig, Signature)
    assert sig.framework is None or (isinstance(sig.framework, str) and len(sig.framework) <= 32)
    assert all(isinstance(x, str) and len(x) <= MAX_LINE for x in sig.failed + sig.errors)
    assert len(sig.failed) <= MAX_FAILED and len(sig.errors) <= MAX_ERRORS
    assert sig.summary is None or len(sig.summary) <= MAX_LINE
    assert sig.exit_code is None or type(sig.exit_code) is int
    json.dumps(sig.to_dict())
    assert compare(sig, PYTEST_FAIL, 1)[0] in ("reproduces", "fixed", "inconclusive")


@pytest.mark.parametrize("d", [None, [], "x", 3, object()])
def test_from_dict_not_a_dict(d):
    assert Signature.from_dict(d) == Signature(None)  # type: ignore[arg-type]


def test_from_dict_keeps_good_fields():
    sig = Signature.from_dict(
        {"framework": "go", "failed": ["TestA", 7], "errors": "no", "exit_code": -9}
    )
    assert sig == Signature("go", ("TestA",), (), None, -9)


# ---------------------------------------------------------------------- a real pytest


def _run_pytest(path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", path.name],
        cwd=path.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_real_pytest_run(tmp_path):
    test_file = tmp_path / "test_real_calc.py"
    test_file.write_text(
        "def add(a, b):\n"
        "    return a + b + 1\n\n\n"
        "def test_add():\n"
        "    assert add(1, 1) == 2, 'add is off by one'\n\n\n"
        "def test_ok():\n"
        "    assert True\n"
    )
    run = _run_pytest(test_file)
    assert run.returncode == 1, run.stdout + run.stderr
    sig = extract(run.stdout + run.stderr, f"{sys.executable} -m pytest -q", run.returncode)
    assert sig.framework == "pytest"
    assert sig.failed == ("test_real_calc.py::test_add",)
    assert sig.errors[0] == "AssertionError: add is off by one"
    assert sig.summary and sig.summary.startswith("1 failed, 1 passed in ")
    assert compare(sig, run.stdout, run.returncode)[0] == "reproduces"

    test_file.write_text(test_file.read_text().replace("a + b + 1", "a + b"))
    fixed = _run_pytest(test_file)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    verdict, ev = compare(sig, fixed.stdout + fixed.stderr, fixed.returncode)
    assert verdict == "fixed", ev
    assert ev["summary"].startswith("2 passed in ")
    assert ev["still_failing"] == [] and ev["now_failing"] == []
