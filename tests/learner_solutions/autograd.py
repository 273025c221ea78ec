"""A learner's topological order: a post-order walk with an explicit stack."""


def topological_order(root):
    order, seen = [], set()
    stack = [root]
    expanded = set()
    while stack:
        t = stack[-1]
        if id(t) in seen:
            stack.pop()
            continue
        parents = [] if t._ctx is None else [p for p in t._ctx.inputs if p.requires_grad and id(p) not in seen]
        if id(t) in expanded or not parents:
            stack.pop()
            seen.add(id(t))
            order.append(t)
        else:
            expanded.add(id(t))
            stack.extend(parents)
    return order
