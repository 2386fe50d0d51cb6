"""A scenario in Python: ``virtrio run docs/examples/console.py``.

``ctx.run(kind, value, **fields)`` runs any registered step (recorded like a YAML step);
``async with ctx.step(name)`` records a step of your own code, under the scenario's deadline.
"""

NAME = "console"
TIMEOUT = 30


async def scenario(vm, ctx):
    """Talk to the shell on the serial console, and check it through the guest agent."""
    console = vm.line("console")
    async with ctx.step("shell on the serial console"):
        mark = console.mark()
        await console.send(f"echo console-of-$((6 * 7))-{vm.name} > /tmp/console.txt\n")
        await console.send("cat /tmp/console.txt\n")
        await console.expect(f"console-of-42-{vm.name}", after=mark, timeout=20)
    result = await ctx.run("shell", "cat /tmp/console.txt")
    assert result.value == f"console-of-42-{vm.name}", result.value
