// Lint rules: typescript-eslint's recommended set, plus the house rule that time is read only through src/clock.ts.
import tseslint from 'typescript-eslint';

const clockRule = {
  'no-restricted-syntax': [
    'error',
    { selector: "NewExpression[callee.name='Date'][arguments.length=0]", message: 'read time from the injected Clock (src/clock.ts)' },
    { selector: "CallExpression[callee.object.name='Date'][callee.property.name='now']", message: 'read time from the injected Clock (src/clock.ts)' },
  ],
  'no-restricted-globals': [
    'error',
    { name: 'setTimeout', message: 'use the injected Clock (src/clock.ts) for timers' },
    { name: 'setInterval', message: 'use the injected Clock (src/clock.ts) for timers' },
  ],
};

export default tseslint.config(
  { ignores: ['node_modules/**', 'var/**'] },
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  { files: ['src/**/*.ts'], ignores: ['src/clock.ts'], rules: clockRule },
);
