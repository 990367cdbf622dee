/* The constraint IR as SMT-LIB2 (node/vm/smtlib.c): exact text for small problems,
 * and every refusal. */
#include <stdio.h>
#include <string.h>

#include "avm_err.h"
#include "smtlib.h"
#include "sym_build.h"
#include "test.h"

/* Writes p (released) and compares with want; NULL want: must be refused with
 * code, err containing what. */
static void expect(int *test_failed_, avm_val p, bool commands, const char *want)
{
    avm_buf b;
    char err[256] = "";
    avm_buf_init(&b);
    int rv = avm_smtlib_write(p, commands, &b, err, sizeof(err));
    CHECK_INT(rv, 0);
    CHECK_STR(avm_buf_cstr(&b), want);
    /* Deterministic. */
    avm_buf c;
    avm_buf_init(&c);
    CHECK_INT(avm_smtlib_write(p, commands, &c, err, sizeof(err)), 0);
    CHECK(b.len == c.len && memcmp(b.data, c.data, b.len) == 0);
    avm_buf_free(&c);
    avm_buf_free(&b);
    avm_val_release(p);
}

static void refuse(int *test_failed_, avm_val p, int code, const char *what)
{
    avm_buf b;
    char err[256] = "";
    avm_buf_init(&b);
    CHECK_INT(avm_smtlib_write(p, true, &b, err, sizeof(err)), code);
    if (strstr(err, what) == NULL) {
        fprintf(stderr, "  err \"%s\" does not say \"%s\"\n", err, what);
        *test_failed_ = 1;
    }
    avm_buf_free(&b);
    avm_val_release(p);
}

TEST(ints_with_ranges)
{
    avm_val x = tb_var("node1/t2.0", AVM_SYM_T_INT);
    /* Unsorted, with a duplicate: runs 1..3, 5, 7..8. */
    avm_val vals = tb_list(7, avm_int(8), avm_int(1), avm_int(2), avm_int(3), avm_int(5),
                           avm_int(7), avm_int(2));
    avm_val p =
        tb_list(2, tb_list(1, tb_choice(x, vals)),
                tb_list(2, avm_bool(true), tb_op2(AVM_SYM_NE, tb_ref(x), avm_int(5))));
    expect(test_failed_, p, true,
           "; AVM constraint problem: 1 choices, 2 requirements\n"
           "(declare-const |node1/t2.0| Int)\n"
           "(assert (or (and (<= 1 |node1/t2.0|) (<= |node1/t2.0| 3)) (= |node1/t2.0| 5) "
           "(and (<= 7 |node1/t2.0|) (<= |node1/t2.0| 8))))\n"
           "(assert (not (= |node1/t2.0| 5)))\n"
           "(check-sat)\n"
           "(get-value (|node1/t2.0|))\n");
    avm_val_release(x);
}

TEST(bools)
{
    avm_val a = tb_var("a", AVM_SYM_T_BOOL), b = tb_var("b", AVM_SYM_T_BOOL);
    avm_val c = tb_var("c", AVM_SYM_T_BOOL);
    avm_val p =
        tb_list(2,
                tb_list(3, tb_choice(a, tb_list(2, avm_bool(false), avm_bool(true))),
                        tb_choice(b, tb_list(1, avm_bool(true))),
                        tb_choice(c, tb_list(2, avm_bool(false), avm_bool(false)))),
                tb_list(2,
                        tb_op2(AVM_SYM_OR, tb_op1(AVM_SYM_NOT, tb_ref(a)),
                               tb_op2(AVM_SYM_EQ, tb_ref(b), avm_bool(false))),
                        avm_bool(false)));
    expect(test_failed_, p, false,
           "; AVM constraint problem: 3 choices, 2 requirements\n"
           "(declare-const |a| Bool)\n"
           "(declare-const |b| Bool)\n"
           "(declare-const |c| Bool)\n"
           "(assert |b|)\n"
           "(assert (not |c|))\n"
           "(assert (or (not |a|) (= |b| false)))\n"
           "(assert false)\n");
    avm_val_release(a);
    avm_val_release(b);
    avm_val_release(c);
}

TEST(nested_and_negative)
{
    avm_val x = tb_var("x", AVM_SYM_T_INT), y = tb_var("y", AVM_SYM_T_INT);
    /* (<= (- (* x -3) (neg y)) (min x y)), (>= (abs x) (max y -9223372036854775808)) */
    avm_val r1 = tb_op2(AVM_SYM_LE,
                        tb_op2(AVM_SYM_SUB, tb_op2(AVM_SYM_MUL, tb_ref(x), avm_int(-3)),
                               tb_op1(AVM_SYM_NEG, tb_ref(y))),
                        tb_op2(AVM_SYM_MIN, tb_ref(x), tb_ref(y)));
    avm_val r2 = tb_op2(AVM_SYM_GE, tb_op1(AVM_SYM_ABS, tb_ref(x)),
                        tb_op2(AVM_SYM_MAX, tb_ref(y), avm_int(INT64_MIN)));
    avm_val p = tb_list(
        2,
        tb_list(2, tb_choice(x, tb_list(1, avm_int(-7))), tb_choice(y, tb_range(-2, 1))),
        tb_list(2, r1, r2));
    expect(test_failed_, p, true,
           "; AVM constraint problem: 2 choices, 2 requirements\n"
           "(declare-const |x| Int)\n"
           "(declare-const |y| Int)\n"
           "(assert (= |x| (- 7)))\n"
           "(assert (and (<= (- 2) |y|) (<= |y| 1)))\n"
           "(define-fun |avm-min| ((a Int) (b Int)) Int (ite (<= a b) a b))\n"
           "(define-fun |avm-max| ((a Int) (b Int)) Int (ite (>= a b) a b))\n"
           "(define-fun |avm-abs| ((a Int)) Int (ite (>= a 0) a (- a)))\n"
           "(assert (<= (- (* |x| (- 3)) (- |y|)) (|avm-min| |x| |y|)))\n"
           "(assert (>= (|avm-abs| |x|) (|avm-max| |y| (- 9223372036854775808))))\n"
           "(check-sat)\n"
           "(get-value (|x| |y|))\n");
    avm_val_release(x);
    avm_val_release(y);
}

TEST(no_choices)
{
    avm_val p = tb_list(2, tb_list(0), tb_list(0));
    expect(test_failed_, p, true,
           "; AVM constraint problem: 0 choices, 0 requirements\n(check-sat)\n");
}

TEST(refusals)
{
    avm_val x = tb_var("x", AVM_SYM_T_INT), b = tb_var("b", AVM_SYM_T_BOOL);
    avm_val xb = tb_var("x", AVM_SYM_T_BOOL), z = tb_var("z", AVM_SYM_T_INT);
    avm_val one = tb_list(1, tb_choice(x, tb_range(1, 2)));
    /* Not (choices requirements). */
    refuse(test_failed_, avm_int(1), AVM_EINVAL, "(choices requirements)");
    refuse(test_failed_, tb_list(1, tb_list(0)), AVM_EINVAL, "(choices requirements)");
    refuse(test_failed_, tb_list(2, tb_list(0), avm_int(2)), AVM_EINVAL,
           "(choices requirements)");
    /* Choices. */
    refuse(test_failed_, tb_list(2, tb_list(1, tb_ref(x)), tb_list(0)), AVM_EINVAL,
           "not (variable values)");
    refuse(test_failed_,
           tb_list(2, tb_list(1, tb_list(2, avm_int(3), tb_range(1, 2))), tb_list(0)),
           AVM_EINVAL, "not a symbolic variable");
    refuse(test_failed_,
           tb_list(2,
                   tb_list(1, tb_list(2, tb_op2(AVM_SYM_ADD, tb_ref(x), avm_int(1)),
                                      tb_range(1, 2))),
                   tb_list(0)),
           AVM_EINVAL, "not a symbolic variable");
    refuse(test_failed_, tb_list(2, tb_list(1, tb_choice(x, tb_list(0))), tb_list(0)),
           AVM_EINVAL, "no values");
    refuse(test_failed_, tb_list(2, tb_list(1, tb_choice(x, avm_int(1))), tb_list(0)),
           AVM_EINVAL, "no values");
    refuse(test_failed_,
           tb_list(2, tb_list(1, tb_choice(x, tb_list(2, avm_int(1), avm_bool(true)))),
                   tb_list(0)),
           AVM_EINVAL, "not all of its type");
    refuse(test_failed_,
           tb_list(2, tb_list(1, tb_choice(b, tb_list(1, avm_int(1)))), tb_list(0)),
           AVM_EINVAL, "not all of its type");
    refuse(test_failed_,
           tb_list(2, tb_list(1, tb_choice(x, tb_list(1, tb_str("1")))), tb_list(0)),
           AVM_EINVAL, "not all of its type");
    refuse(test_failed_,
           tb_list(2,
                   tb_list(2, tb_choice(x, tb_range(1, 2)),
                           tb_choice(xb, tb_list(1, avm_bool(true)))),
                   tb_list(0)),
           AVM_EINVAL, "same name");
    const char *bad_names[] = {"a|b", "a\\b", "a\nb", "tab\there", "del\x7f"};
    for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
        avm_val v = tb_var(bad_names[i], AVM_SYM_T_INT);
        refuse(test_failed_,
               tb_list(2, tb_list(1, tb_choice(v, tb_range(1, 2))), tb_list(0)),
               AVM_EINVAL, "plain name");
        avm_val_release(v);
    }
    /* Requirements. */
    refuse(test_failed_, tb_list(2, tb_ref(one), tb_list(1, tb_ref(x))), AVM_EINVAL,
           "not a bool");
    refuse(test_failed_, tb_list(2, tb_ref(one), tb_list(1, avm_int(1))), AVM_EINVAL,
           "not a bool");
    refuse(test_failed_, tb_list(2, tb_ref(one), tb_list(1, tb_str("yes"))), AVM_EINVAL,
           "not a bool");
    refuse(test_failed_,
           tb_list(2, tb_ref(one), tb_list(1, tb_op2(AVM_SYM_LT, tb_ref(z), avm_int(0)))),
           AVM_EINVAL, "no choice declares");
    /* x is declared Int: x used as a Bool is another variable. */
    refuse(test_failed_,
           tb_list(2, tb_ref(one), tb_list(1, tb_op1(AVM_SYM_NOT, tb_ref(xb)))),
           AVM_EINVAL, "another type");
    avm_val_release(one);
    avm_val_release(x);
    avm_val_release(b);
    avm_val_release(xb);
    avm_val_release(z);
}

TEST(model_check)
{
    avm_val x = tb_var("x", AVM_SYM_T_INT), b = tb_var("b", AVM_SYM_T_BOOL);
    avm_val p = tb_list(2,
                        tb_list(2, tb_choice(x, tb_range(1, 3)),
                                tb_choice(b, tb_list(1, avm_bool(true)))),
                        tb_list(0));
    char err[256];
    avm_val good = tb_list(2, tb_list(2, tb_str("b"), avm_bool(true)),
                           tb_list(2, tb_str("x"), avm_int(2)));
    CHECK_INT(avm_smtlib_model_check(p, good, err, sizeof(err)), 0);
    avm_val bad[] = {
        avm_int(1),
        tb_list(1, tb_list(2, tb_str("x"), avm_int(2))),
        tb_list(2, tb_list(2, tb_str("x"), avm_int(4)),
                tb_list(2, tb_str("b"), avm_bool(true))),
        tb_list(2, tb_list(2, tb_str("x"), avm_bool(true)),
                tb_list(2, tb_str("b"), avm_bool(true))),
        tb_list(3, tb_list(2, tb_str("x"), avm_int(1)),
                tb_list(2, tb_str("x"), avm_int(2)),
                tb_list(2, tb_str("b"), avm_bool(true))),
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        CHECK_INT(avm_smtlib_model_check(p, bad[i], err, sizeof(err)), AVM_EINVAL);
        CHECK(err[0] != '\0');
        avm_val_release(bad[i]);
    }
    avm_val_release(good);
    avm_val_release(p);
    avm_val_release(x);
    avm_val_release(b);
}

TEST_MAIN(T(ints_with_ranges), T(bools), T(nested_and_negative), T(no_choices),
          T(refusals), T(model_check))
