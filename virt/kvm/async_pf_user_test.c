// SPDX-License-Identifier: GPL-2.0-only
/*
 * KUnit tests of userspace async #PF items on the shared async #PF queue
 * (kvm-backport, Documentation/userfault.rst).
 *
 * Built only with CONFIG_KVM_ASYNC_PF_USER_KUNIT_TEST, #included at the end
 * of virt/kvm/async_pf.c after the kernel async #PF suite, whose made-up
 * VM, vCPU and mm (apf_test_init()) and helpers these tests share.  They
 * drive the real paths: kvm_setup_async_pf() with KVM_ASYNC_PF_USER, the
 * core of KVM_ASYNC_PF_USER_READY (kvm_async_pf_user_ready(), static), the
 * x86 classification of tokens it does not find, and
 * kvm_clear_async_pf_completion_queue(), the path of vCPU reset and VM
 * destruction.  Item lifetime is checked through the lists and, in the
 * debug kernel that runs these suites too, by KASAN and kmemleak.
 */

#define APF_USER_TEST_GPA	0x5678000
/* x86's token format, see alloc_apf_token(): (sequence << 12) | vcpu_id */
#define APF_USER_TEST_SEQ_SHIFT	12

static u32 apf_user_token(struct kvm_vcpu *vcpu, u32 seq)
{
	return (seq << APF_USER_TEST_SEQ_SHIFT) | vcpu->vcpu_id;
}

static int apf_user_test_init(struct kunit *test)
{
	struct apf_test *ctx;
	int r;

	r = apf_test_init(test);
	if (r)
		return r;
	ctx = test->priv;
	ctx->kvm->arch.async_pf_user = true;
	/* Sequence numbers below 16 count as issued. */
	ctx->vcpu->arch.apf.id = 16;
	return 0;
}

/* Queue a user item for @token through the real setup path. */
static struct kvm_async_pf *apf_user_queue(struct kunit *test, u32 token,
					   enum kvm_async_pf_type type)
{
	struct apf_test *ctx = test->priv;
	struct kvm_arch_async_pf arch = {
		.token = token,
		.gfn = (APF_USER_TEST_GPA >> PAGE_SHIFT) + token,
		.direct_map = true,
	};

	KUNIT_ASSERT_TRUE(test, kvm_setup_async_pf(ctx->vcpu, APF_USER_TEST_GPA,
						   ctx->hva, &arch, type));
	return list_last_entry(&ctx->vcpu->async_pf.queue,
			       struct kvm_async_pf, queue);
}

/*
 * A user item is queued with no work behind it; READY moves it to the done
 * list and tells the vCPU; a second READY is a double completion; once the
 * vCPU is done with it the token is stale.
 */
static void apf_user_test_ready(struct kunit *test)
{
	struct apf_test *ctx = test->priv;
	u32 token = apf_user_token(ctx->vcpu, 3);
	struct kvm_async_pf *apf;

	apf = apf_user_queue(test, token, KVM_ASYNC_PF_USER);
	KUNIT_EXPECT_EQ(test, apf->type, KVM_ASYNC_PF_USER);
	KUNIT_EXPECT_NULL(test, apf->work.func);
	KUNIT_EXPECT_PTR_EQ(test, apf->vcpu, ctx->vcpu);
	KUNIT_EXPECT_EQ(test, ctx->vcpu->async_pf.queued, 1U);
	KUNIT_EXPECT_FALSE(test, kvm_test_request(KVM_REQ_APF_READY, ctx->vcpu));

	KUNIT_EXPECT_EQ(test, kvm_async_pf_user_ready(ctx->vcpu, token), 0);
	KUNIT_EXPECT_NULL(test, apf->vcpu);
	KUNIT_EXPECT_TRUE(test, apf_test_on_done_list(ctx, apf));
	KUNIT_EXPECT_TRUE(test, kvm_test_request(KVM_REQ_APF_READY, ctx->vcpu));

	KUNIT_EXPECT_EQ(test, kvm_async_pf_user_ready(ctx->vcpu, token),
			-EALREADY);

	kvm_clear_async_pf_completion_queue(ctx->vcpu);
	apf_test_expect_all_taken_back(test);
	KUNIT_EXPECT_EQ(test, kvm_async_pf_user_ready(ctx->vcpu, token),
			-ESTALE);
}

/* Tokens READY must refuse without touching the queue. */
static void apf_user_test_bad_tokens(struct kunit *test)
{
	struct apf_test *ctx = test->priv;
	struct kvm_vcpu *vcpu = ctx->vcpu;

	apf_user_queue(test, apf_user_token(vcpu, 5), KVM_ASYNC_PF_USER);

	/* Never issued: 0, wider than 32 bits, a later sequence number. */
	KUNIT_EXPECT_EQ(test, kvm_async_pf_user_ready(vcpu, 0), -ENOENT);
	KUNIT_EXPECT_EQ(test, kvm_async_pf_user_ready(vcpu, BIT_ULL(40) |
						      apf_user_token(vcpu, 5)),
			-ENOENT);
	KUNIT_EXPECT_EQ(test, kvm_async_pf_user_ready(vcpu,
						      apf_user_token(vcpu, 16)),
			-ENOENT);
	/* A vCPU id no vCPU of the VM has. */
	KUNIT_EXPECT_EQ(test, kvm_async_pf_user_ready(vcpu, (5 << APF_USER_TEST_SEQ_SHIFT) | 7),
			-ENOENT);
	/* Issued, not outstanding. */
	KUNIT_EXPECT_EQ(test, kvm_async_pf_user_ready(vcpu,
						      apf_user_token(vcpu, 4)),
			-ESTALE);

	/* None of that completed the outstanding item. */
	KUNIT_EXPECT_FALSE(test, kvm_test_request(KVM_REQ_APF_READY, vcpu));
	KUNIT_EXPECT_TRUE(test, list_empty(&vcpu->async_pf.done));

	/* Off on the VM: nothing is looked at. */
	ctx->kvm->arch.async_pf_user = false;
	KUNIT_EXPECT_EQ(test, kvm_async_pf_user_ready(vcpu,
						      apf_user_token(vcpu, 5)),
			-EOPNOTSUPP);
	ctx->kvm->arch.async_pf_user = true;

	KUNIT_EXPECT_EQ(test, kvm_async_pf_user_ready(vcpu,
						      apf_user_token(vcpu, 5)), 0);
	kvm_clear_async_pf_completion_queue(vcpu);
	apf_test_expect_all_taken_back(test);
}

/* Another vCPU's token: EXDEV, and its item is not completed by it. */
static void apf_user_test_foreign(struct kunit *test)
{
	struct apf_test *ctx = test->priv;
	struct kvm_vcpu *other;

	other = kunit_kzalloc(test, sizeof(*other), GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, other);
	other->vcpu_id = 1;
	xa_init(&ctx->kvm->vcpu_array);
	KUNIT_ASSERT_FALSE(test, xa_is_err(xa_store(&ctx->kvm->vcpu_array, 0,
						    ctx->vcpu, GFP_KERNEL)));
	KUNIT_ASSERT_FALSE(test, xa_is_err(xa_store(&ctx->kvm->vcpu_array, 1,
						    other, GFP_KERNEL)));
	atomic_set(&ctx->kvm->online_vcpus, 2);

	apf_user_queue(test, apf_user_token(ctx->vcpu, 6), KVM_ASYNC_PF_USER);
	KUNIT_EXPECT_EQ(test, kvm_async_pf_user_ready(ctx->vcpu,
						      apf_user_token(other, 6)),
			-EXDEV);
	KUNIT_EXPECT_TRUE(test, list_empty(&ctx->vcpu->async_pf.done));

	kvm_clear_async_pf_completion_queue(ctx->vcpu);
	apf_test_expect_all_taken_back(test);
	atomic_set(&ctx->kvm->online_vcpus, 0);
	xa_destroy(&ctx->kvm->vcpu_array);
}

/* A kernel item's token: the worker completes it, READY may not. */
static void apf_user_test_kernel_token(struct kunit *test)
{
	struct apf_test *ctx = test->priv;
	u32 token = apf_user_token(ctx->vcpu, 7);
	struct kvm_async_pf *apf;

	apf = apf_user_queue(test, token, KVM_ASYNC_PF_KERNEL);
	KUNIT_EXPECT_EQ(test, kvm_async_pf_user_ready(ctx->vcpu, token),
			-EPERM);
	flush_work(&apf->work);
	/* Done, still on the queue until the vCPU takes it: still EPERM. */
	KUNIT_EXPECT_EQ(test, kvm_async_pf_user_ready(ctx->vcpu, token),
			-EPERM);
	kvm_clear_async_pf_completion_queue(ctx->vcpu);
	apf_test_expect_all_taken_back(test);
}

/*
 * vCPU reset or VM destruction with user items outstanding, completed and
 * not, next to a kernel item: each is freed once, none is left, and their
 * tokens are stale afterwards.
 */
static void apf_user_test_teardown(struct kunit *test)
{
	struct apf_test *ctx = test->priv;
	struct kvm_vcpu *vcpu = ctx->vcpu;
	struct kvm_async_pf *kernel;
	u32 seq;

	for (seq = 8; seq < 12; seq++)
		apf_user_queue(test, apf_user_token(vcpu, seq),
			       KVM_ASYNC_PF_USER);
	kernel = apf_user_queue(test, apf_user_token(vcpu, 12),
				KVM_ASYNC_PF_KERNEL);
	KUNIT_EXPECT_EQ(test, vcpu->async_pf.queued, 5U);

	KUNIT_EXPECT_EQ(test, kvm_async_pf_user_ready(vcpu,
						      apf_user_token(vcpu, 9)), 0);
	flush_work(&kernel->work);

	kvm_clear_async_pf_completion_queue(vcpu);
	apf_test_expect_all_taken_back(test);
	for (seq = 8; seq < 12; seq++)
		KUNIT_EXPECT_EQ(test,
				kvm_async_pf_user_ready(vcpu,
							apf_user_token(vcpu, seq)),
				-ESTALE);
}

/*
 * Once the 20-bit sequence has wrapped, any token of this vCPU may have
 * been issued: not queued means stale, and a queued one is still found.
 */
static void apf_user_test_wrapped(struct kunit *test)
{
	struct apf_test *ctx = test->priv;
	struct kvm_vcpu *vcpu = ctx->vcpu;
	u32 old = apf_user_token(vcpu, 0xffff0);

	vcpu->arch.apf.id = 3;
	vcpu->arch.apf.id_wrapped = true;
	apf_user_queue(test, old, KVM_ASYNC_PF_USER);

	KUNIT_EXPECT_EQ(test, kvm_async_pf_user_ready(vcpu,
						      apf_user_token(vcpu, 0xffff1)),
			-ESTALE);
	KUNIT_EXPECT_EQ(test, kvm_async_pf_user_ready(vcpu, old), 0);

	kvm_clear_async_pf_completion_queue(vcpu);
	apf_test_expect_all_taken_back(test);
}

/*
 * Setting up a user item changes nothing the guest can see: "not present"
 * is owed, not injected, and no gfn is marked outstanding.  At the next
 * entry a vCPU that cannot take an async #PF drops the item, and its
 * token is then stale.  This one is in SMM (which the checks look at
 * before anything this made-up vCPU lacks).
 */
static void apf_user_test_deferred(struct kunit *test)
{
	struct apf_test *ctx = test->priv;
	struct kvm_vcpu *vcpu = ctx->vcpu;
	u32 token = apf_user_token(vcpu, 13);
	struct kvm_async_pf *apf;

	apf = apf_user_queue(test, token, KVM_ASYNC_PF_USER);
	KUNIT_EXPECT_TRUE(test, apf->notpresent_pending);
	KUNIT_EXPECT_FALSE(test, apf->notpresent_injected);
	KUNIT_EXPECT_FALSE(test, kvm_find_async_pf_gfn(vcpu, apf->arch.gfn));

	vcpu->arch.hflags |= HF_SMM_MASK;
	kvm_async_pf_user_not_present(vcpu);
	vcpu->arch.hflags &= ~HF_SMM_MASK;
	apf_test_expect_all_taken_back(test);
	KUNIT_EXPECT_EQ(test, kvm_async_pf_user_ready(vcpu, token), -ESTALE);

	/* Nothing is owed any more: a second entry finds nothing to do. */
	kvm_async_pf_user_not_present(vcpu);
	apf_test_expect_all_taken_back(test);
}

/*
 * READY before the vCPU ran again: the guest never heard of the item, so
 * it gets neither "not present" nor "page ready".  The entry drops the
 * item from the done list too; so does the completion path when it runs
 * first (it would otherwise try to send "page ready" for a gfn that was
 * never marked outstanding).
 */
static void apf_user_test_ready_before_entry(struct kunit *test)
{
	struct apf_test *ctx = test->priv;
	struct kvm_vcpu *vcpu = ctx->vcpu;
	u32 token = apf_user_token(vcpu, 14);
	struct kvm_async_pf *apf;

	apf = apf_user_queue(test, token, KVM_ASYNC_PF_USER);
	KUNIT_EXPECT_EQ(test, kvm_async_pf_user_ready(vcpu, token), 0);
	KUNIT_EXPECT_TRUE(test, apf_test_on_done_list(ctx, apf));
	kvm_async_pf_user_not_present(vcpu);
	apf_test_expect_all_taken_back(test);
	KUNIT_EXPECT_EQ(test, kvm_async_pf_user_ready(vcpu, token), -ESTALE);

	token = apf_user_token(vcpu, 15);
	apf = apf_user_queue(test, token, KVM_ASYNC_PF_USER);
	KUNIT_EXPECT_EQ(test, kvm_async_pf_user_ready(vcpu, token), 0);
	kvm_check_async_pf_completion(vcpu);
	apf_test_expect_all_taken_back(test);
	KUNIT_EXPECT_EQ(test, kvm_async_pf_user_ready(vcpu, token), -ESTALE);
}

static struct kunit_case apf_user_test_cases[] = {
	KUNIT_CASE(apf_user_test_ready),
	KUNIT_CASE(apf_user_test_bad_tokens),
	KUNIT_CASE(apf_user_test_foreign),
	KUNIT_CASE(apf_user_test_kernel_token),
	KUNIT_CASE(apf_user_test_teardown),
	KUNIT_CASE(apf_user_test_wrapped),
	KUNIT_CASE(apf_user_test_deferred),
	KUNIT_CASE(apf_user_test_ready_before_entry),
	{}
};

static struct kunit_suite apf_user_test_suite = {
	.name = "kvm_async_pf_user",
	.init = apf_user_test_init,
	.exit = apf_test_exit,
	.test_cases = apf_user_test_cases,
};

kunit_test_suite(apf_user_test_suite);
